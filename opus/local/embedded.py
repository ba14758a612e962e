"""A private PostgreSQL for when no DATABASE_URL is configured.

`pgserver` ships PostgreSQL binaries in a wheel and starts a real server on a Unix socket inside its data
folder. Several Opus processes on one machine share one server; pgserver counts them and, with
`cleanup_mode="stop"`, the last one to leave stops it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "opus"


class EmbeddedPostgres:
    """Start (or join) the embedded server whose data lives in `state_dir / "pgdata"`."""

    def __init__(self, state_dir: Path, *, database: str = DATABASE_NAME) -> None:
        self.data_dir = (state_dir / "pgdata").resolve()
        self.database = database
        self._server: Any = None
        self.url = ""

    def start(self) -> str:
        import pgserver  # imported here: only the embedded mode needs its binaries

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        admin_url: str = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self.url = self._server.get_uri(self.database)
        logger.info("embedded postgres ready", extra={"data_dir": str(self.data_dir)})
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
