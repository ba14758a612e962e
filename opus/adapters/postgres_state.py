"""Single-machine adapters kept in PostgreSQL: the watermark store and the alert sink."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from opus.db.pool import Database
from opus.db.queries import Queries
from opus.errors import OpusError

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


class Notifier(Protocol):
    def send(self, subject: str, text: str) -> None: ...


class PostgresAlerts:
    """Alerts recorded in `alerts` (the dashboard and /analytics/alerts read them), logged, and sent on by the
    notifier when there is one. A failed delivery leaves `delivered_at` empty and never fails the caller."""

    def __init__(self, db: Database, notifier: Notifier | None = None) -> None:
        self._db = db
        self._notifier = notifier

    def raise_alert(
        self, kind: str, message: str, *, severity: str = "error", run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as conn:
            row = conn.execute(
                Q.insert_alert,
                {"kind": kind, "severity": severity, "message": message, "run_id": run_id,
                 "details": Jsonb(dict(details)) if details else None},
            ).fetchone()
        logger.error("alert raised", extra={"kind": kind, "severity": severity, "run_id": run_id})
        if self._notifier is None or row is None:
            return
        try:
            self._notifier.send(f"[Opus {severity}] {kind}", message)
        except OpusError as exc:
            logger.warning("alert not delivered", extra={"kind": kind, "reason": str(exc)})
            return
        with self._db.transaction() as conn:
            conn.execute(Q.mark_alert_delivered, {"id": row["id"]})


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
