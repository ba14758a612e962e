"""Open the database a process should use: the configured server, else the embedded one."""

from __future__ import annotations

from contextlib import ExitStack

from opus.config import Settings
from opus.db.migrate import migrate
from opus.db.pool import Database
from opus.local.embedded import EmbeddedPostgres


def database_url(settings: Settings, stack: ExitStack) -> str:
    """The URL to connect to; an embedded server started here is stopped when `stack` closes."""
    url = settings.configured_database_url
    if url:
        return url
    embedded = stack.enter_context(EmbeddedPostgres(settings.state_dir))
    return embedded.url


def open_database(settings: Settings, stack: ExitStack, *, run_migrations: bool = True) -> Database:
    """A pool on the right database, migrated to the latest schema, closed when `stack` closes."""
    url = database_url(settings, stack)
    if run_migrations:
        migrate(url)
    db = Database(
        url,
        max_size=settings.pg_pool_max,
        timeout_s=settings.pg_conn_timeout_ms / 1000,
        idle_timeout_s=settings.pg_idle_timeout_ms / 1000,
    )
    stack.callback(db.close)
    return db
