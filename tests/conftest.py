"""Shared fixtures: a real PostgreSQL for every integration test.

The server is, in order: `OPUS_TEST_DATABASE_URL` if set; else the PostgreSQL on 127.0.0.1:5432 if one
answers; else an embedded server (pgserver) in a temporary folder. Each test session creates its own
database, migrates it once, and every test that asks for `db` starts from empty tables.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql

from opus.db.pool import Database
from opus.local.embedded import EmbeddedPostgres
from opus.testing.databases import scratch_database

T = TypeVar("T")
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
# Tables whose rows the migrations seed: reset to the seed, not emptied.
SEEDED = ("pricing_rules",)


def _server_url(stack: ExitStack, tmp: Path) -> str:
    configured = os.environ.get("OPUS_TEST_DATABASE_URL")
    if configured:
        return configured
    try:
        psycopg.connect(LOCAL_SERVER, connect_timeout=2).close()
        return LOCAL_SERVER
    except psycopg.OperationalError:
        embedded = stack.enter_context(EmbeddedPostgres(tmp, database="postgres"))
        return embedded.url


def run_concurrently(fn: Callable[[], T], times: int) -> list[T]:
    """Call `fn` from `times` threads released together; return the results, or raise the first error."""
    barrier = threading.Barrier(times)
    results: list[T] = []
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def concurrently() -> Callable[[Callable[[], T], int], list[T]]:
    """`concurrently(fn, 8)`: see `run_concurrently`."""
    return run_concurrently


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ExitStack() as stack:
        server = _server_url(stack, tmp_path_factory.mktemp("pg"))
        yield stack.enter_context(scratch_database(server, "opus_test"))


@pytest.fixture(scope="session")
def _session_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url, max_size=8)
    yield db
    db.close()


@pytest.fixture(scope="session")
def _seed_rows(_session_db: Database) -> dict[str, list[dict[str, object]]]:
    with _session_db.connection() as conn:
        return {t: conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))).fetchall() for t in SEEDED}


@pytest.fixture
def db(_session_db: Database, _seed_rows: dict[str, list[dict[str, object]]]) -> Database:
    """The test database with every table emptied (seeded tables back to their seed)."""
    with _session_db.transaction() as conn:
        tables = [
            r["tablename"]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
        )
        for table, rows in _seed_rows.items():
            for row in rows:
                cols = list(row)
                conn.execute(
                    sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})").format(
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, cols)),
                        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                    ),
                    list(row.values()),
                )
            # Explicit ids were inserted: move the identity past them so the next insert does not collide.
            conn.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), (SELECT max(id) FROM {i}))").format(
                    t=sql.Literal(table), i=sql.Identifier(table)
                )
            )
    return _session_db
