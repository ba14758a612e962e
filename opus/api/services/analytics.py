"""Read-only figures over the catalogue, the runs and what the pipeline recorded."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from opus.api.context import ApiContext
from opus.db.queries import Queries
from opus.errors import NotFoundError

Q = Queries("api_analytics")
Row = dict[str, Any]


def summary(ctx: ApiContext) -> Row:
    with ctx.db.connection() as conn:
        def counts(query: Any) -> dict[str, int]:
            return {str(r["key"]): int(r["n"]) for r in conn.execute(query)}

        return {
            "by_status": counts(Q.counts_by_status),
            "by_availability": counts(Q.counts_by_availability),
            "by_lab_grown": counts(Q.counts_by_lab_grown),
            "prices": conn.execute(Q.price_stats).fetchone(),
            "stale_records": int(conn.execute(Q.stale_records).fetchone()["n"]),  # type: ignore[index]
            "last_run": conn.execute(Q.last_run).fetchone(),
        }


def runs(ctx: ApiContext, *, limit: int, offset: int, status: str | None) -> tuple[list[Row], int | None]:
    with ctx.db.connection() as conn:
        rows = conn.execute(Q.runs, {"limit": limit + 1, "offset": offset, "status": status}).fetchall()
    more = len(rows) > limit
    return rows[:limit], (offset + limit if more else None)


def run(ctx: ApiContext, run_id: UUID) -> Row:
    with ctx.db.connection() as conn:
        row = conn.execute(Q.run, {"run_id": run_id}).fetchone()
        if row is None:
            raise NotFoundError(f"run {run_id} does not exist")
        partitions = conn.execute(Q.run_partitions, {"run_id": run_id}).fetchall()
    return {**row, "partitions": partitions}


def suppliers(ctx: ApiContext, *, limit: int) -> list[Row]:
    with ctx.db.connection() as conn:
        return conn.execute(Q.suppliers, {"limit": limit}).fetchall()


def errors(ctx: ApiContext, *, run_id: UUID | None, before_id: int | None, limit: int) -> list[Row]:
    with ctx.db.connection() as conn:
        return conn.execute(Q.errors, {"run_id": run_id, "before_id": before_id, "limit": limit}).fetchall()


def alerts(
    ctx: ApiContext, *, severity: str | None, run_id: UUID | None, before_id: int | None, limit: int
) -> list[Row]:
    params = {"severity": severity, "run_id": run_id, "before_id": before_id, "limit": limit}
    with ctx.db.connection() as conn:
        return conn.execute(Q.alerts, params).fetchall()
