"""Scratch databases for tests and benchmarks: created, migrated, and dropped with their connections."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from opus.db.migrate import migrate
from opus.db.pool import Database


def with_dbname(url: str, name: str) -> str:
    """The same server URL naming another database (kept a URL: Settings accepts only URLs)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def scratch_database(server: str, prefix: str) -> Iterator[str]:
    """A new database on `server` (any URL of it), migrated; dropped, connections and all, when the block ends."""
    admin = with_dbname(server, "postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_dbname(server, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def fetch_one(db: Database, query: str, *params: Any) -> dict[str, Any]:
    """The one row a test's query must return."""
    with db.connection() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row
