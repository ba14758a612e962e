"""Read-only figures for operators: run history with totals, the pipeline at a glance, consolidation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from opus.api.context import ApiContext
from opus.db.queries import Queries

Q = Queries("api_operations")
Row = dict[str, Any]
TROUBLE_WINDOW = timedelta(hours=24)


def run_history(ctx: ApiContext, *, limit: int, offset: int, status: str | None) -> tuple[list[Row], int | None]:
    params = {"limit": limit + 1, "offset": offset, "status": status, "now": ctx.now()}
    with ctx.db.connection() as conn:
        rows = conn.execute(Q.run_history, params).fetchall()
    more = len(rows) > limit
    return rows[:limit], (offset + limit if more else None)


def overview(ctx: ApiContext) -> Row:
    since = ctx.now() - TROUBLE_WINDOW
    with ctx.db.connection() as conn:
        inventory = conn.execute(Q.inventory_by_feed).fetchall()
        watermarks = conn.execute(Q.watermarks).fetchall()
        trouble = conn.execute(Q.recent_trouble, {"since": since}).fetchone()
    assert trouble is not None
    return {"inventory": inventory, "watermarks": watermarks, "last_24h": {**trouble, "since": since}}


def consolidation(ctx: ApiContext) -> Row:
    with ctx.db.connection() as conn:
        backlog = conn.execute(Q.raw_backlog, {"now": ctx.now()}).fetchone()
        latest = conn.execute(Q.latest_consolidation).fetchone()
    assert backlog is not None
    return {"pending_rows": backlog["pending"], "claimed_rows": backlog["claimed"], "latest": latest}
