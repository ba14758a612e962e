"""Migrations apply to an empty database, record themselves, and a rerun applies nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from opus.db.migrate import MIGRATIONS_DIR, discover, migrate

Concurrently = Callable[[Callable[[], int], int], list[int]]


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    name = f"opus_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params["dbname"] = name
    url = psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_all_migrations_apply_to_an_empty_database_and_a_rerun_applies_nothing(empty_database: str) -> None:
    files = discover()
    assert files, "no migrations found"
    applied = migrate(empty_database)
    assert [m.version for m in applied] == [m.version for m in files]
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        rules = conn.execute("SELECT priority, markup_ratio FROM pricing_rules").fetchall()
    assert recorded == [m.version for m in files]
    expected = {
        "diamonds", "raw_diamonds_nivoda", "pricing_rules", "run_metadata", "partition_progress",
        "hold_history", "purchase_history", "api_keys", "error_logs", "alerts", "schema_migrations",
        "queue_messages", "watermarks",
    }
    assert expected <= tables
    assert len(rules) == 1, "the catch-all pricing rule is seeded exactly once"


def test_concurrent_migrators_apply_each_migration_once(empty_database: str, concurrently: Concurrently) -> None:
    results = concurrently(lambda: len(migrate(empty_database)), 3)
    assert sorted(results) == [0, 0, len(discover())]


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database: str, tmp_path: Path) -> None:
    for m in discover():
        (tmp_path / m.path.name).write_text(m.path.read_text())
    (tmp_path / "9999_broken.sql").write_text("CREATE TABLE half_done (id int); SELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(empty_database, tmp_path)
    with psycopg.connect(empty_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        half = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert 9999 not in versions
    assert half == (None,)
    assert MIGRATIONS_DIR.is_dir()
