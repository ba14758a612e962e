"""Read-only figures for operators: run history with totals, the pipeline at a glance, consolidation, feeds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from opus.api.context import ApiContext
from opus.api.schemas.operations import RECENT_ITEMS
from opus.db.queries import Queries

Q = Queries("api_operations")
Row = dict[str, Any]
TROUBLE_WINDOW = timedelta(hours=24)


def run_history(
    ctx: ApiContext, *, limit: int, offset: int, status: str | None, feed: str | None
) -> tuple[list[Row], int | None]:
    params = {"limit": limit + 1, "offset": offset, "status": status, "feed": feed, "now": ctx.now()}
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
        window = {"since": since, "limit": RECENT_ITEMS}
        failed = conn.execute(Q.recent_failed_runs, window).fetchall()
        alerts = conn.execute(Q.recent_alerts, window).fetchall()
    assert trouble is not None
    last_24h = {**trouble, "since": since, "failed_run_items": failed, "alert_items": alerts}
    return {"inventory": inventory, "watermarks": watermarks, "last_24h": last_24h}


def consolidation(ctx: ApiContext) -> Row:
    with ctx.db.connection() as conn:
        backlog = conn.execute(Q.raw_backlog, {"now": ctx.now()}).fetchone()
        by_feed = conn.execute(Q.latest_consolidation_by_feed).fetchall()
    assert backlog is not None
    latest = max(by_feed, key=lambda r: r["consolidation_enqueued_at"], default=None)
    return {"pending_rows": backlog["pending"], "claimed_rows": backlog["claimed"], "latest": latest,
            "by_feed": by_feed}


def feeds(ctx: ApiContext) -> list[Row]:
    """The configured feeds in file order, each with its latest run and watermark."""
    configured = ctx.settings.feeds
    with ctx.db.connection() as conn:
        state = conn.execute(Q.feed_state, {"feeds": [f.name for f in configured]}).fetchall()
    return [
        {"name": f.name, "enabled": f.enabled, "query": dict(f.query), "watermark": s["watermark"],
         "latest_run": None if s["run_id"] is None else
         {k: s[k] for k in ("run_id", "run_type", "status", "started_at", "finished_at")}}
        for f, s in zip(configured, state, strict=True)
    ]
