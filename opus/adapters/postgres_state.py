"""Single-machine adapters kept in PostgreSQL: the watermark store and the alert sink."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from opus.db.pool import Database
from opus.db.queries import Queries

logger = logging.getLogger(__name__)
Q = Queries("runs")


class PostgresWatermarkStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, feed: str) -> datetime | None:
        with self._db.connection() as conn:
            row = conn.execute(Q.get_watermark, {"feed": feed}).fetchone()
        return row["value"] if row else None

    def advance(self, feed: str, value: datetime) -> None:
        with self._db.transaction() as conn:
            conn.execute(Q.advance_watermark, {"feed": feed, "value": value})


class PostgresAlerts:
    """Alerts recorded in `alerts` (the dashboard and /analytics/alerts read them) and logged."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def raise_alert(
        self, kind: str, message: str, *, severity: str = "error", run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                Q.insert_alert,
                {"kind": kind, "severity": severity, "message": message, "run_id": run_id,
                 "details": Jsonb(dict(details)) if details else None},
            )
        logger.error("alert raised", extra={"kind": kind, "severity": severity, "run_id": run_id})


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
