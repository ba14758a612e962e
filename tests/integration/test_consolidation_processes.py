"""Consolidation with worker processes: the same `diamonds` as in-thread, nothing lost when its process is killed,
prices from the rules in force at the write, and COPY lines that PostgreSQL reads back exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.domain.models import FeedQuery
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import consolidate_batches, drain
from opus.pipeline.preparers import InThreadPreparer, ProcessPreparer
from opus.pipeline.raw_store import payload_hash
from opus.pipeline.staging_rows import copy_text_line
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.fakes import SteppableClock

RUN_ID = "00000000-0000-0000-0000-0000000000c1"
STONES = 900
# Compared between the two paths: everything but identity, bookkeeping times and the generated columns.
SKIPPED = {"id", "created_at", "updated_at", "price_per_carat"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=STONES, seed=33) as sb:
        yield sb


def settings_for(database_url: str, sandbox: RunningSandbox, **overrides: Any) -> Settings:
    return load_settings(**{
        "database_url": database_url, "nivoda_endpoint": sandbox.endpoint, "nivoda_rate_limit_per_s": 10_000,
        "consolidator_batch_size": 200, "consolidator_concurrency": 2, **overrides,
    })


def load_raw(db: Database, runtime: LocalRuntime, broken: int = 0) -> list[dict[str, Any]]:
    """Every sandbox stone as a pending raw row of a consolidating run; the first `broken` cannot be mapped."""
    items = [item for offset in range(0, STONES, 50) for item in runtime.deps.feed.page(FeedQuery(), offset, 50)]
    items = [item | {"price": "not a price"} if i < broken else item for i, item in enumerate(items)]
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, partitions_total)"
            " VALUES (%s, 'nivoda', 'full', 'consolidating', now(), now() + interval '1 hour', 1)", (RUN_ID,))
        for item in items:
            conn.execute(
                "INSERT INTO raw_diamonds_nivoda (feed, supplier_stone_id, payload, payload_hash, run_id,"
                " seen_run_id) VALUES ('nivoda', %s, %s, %s, %s, %s)",
                (item["diamond"]["id"], Jsonb(item), payload_hash(item), RUN_ID, RUN_ID))
    return items


def diamond_rows(db: Database) -> dict[str, dict[str, Any]]:
    with db.connection() as conn:
        return {r["supplier_stone_id"]: {k: v for k, v in r.items() if k not in SKIPPED}
                for r in conn.execute("SELECT * FROM diamonds")}


def start_over(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("TRUNCATE diamonds CASCADE")
        conn.execute("DELETE FROM error_logs")
        conn.execute("UPDATE raw_diamonds_nivoda SET pending = true, claimed_by = NULL, claimed_until = NULL")


def test_worker_processes_write_the_same_diamonds_as_the_thread(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with LocalRuntime(settings_for(database_url, sandbox, consolidator_processes=0), db=db) as runtime:
        assert isinstance(runtime.deps.preparer, InThreadPreparer)
        load_raw(db, runtime, broken=3)
        in_thread = drain(runtime.deps, RUN_ID, "nivoda")
    threaded_rows = diamond_rows(db)
    with db.connection() as conn:
        threaded_errors = conn.execute("SELECT supplier_stone_id, field FROM error_logs ORDER BY 1").fetchall()
    start_over(db)
    with LocalRuntime(settings_for(database_url, sandbox, consolidator_processes=2), db=db) as runtime:
        assert isinstance(runtime.deps.preparer, ProcessPreparer)
        in_pool = drain(runtime.deps, RUN_ID, "nivoda")
    with db.connection() as conn:
        pool_errors = conn.execute("SELECT supplier_stone_id, field FROM error_logs ORDER BY 1").fetchall()
    assert (in_thread.consolidated, in_thread.errors) == (STONES - 3, 3)
    assert (in_pool.consolidated, in_pool.errors) == (in_thread.consolidated, in_thread.errors)
    assert len(threaded_rows) == STONES - 3
    assert diamond_rows(db) == threaded_rows
    assert pool_errors == threaded_errors
    assert len(pool_errors) == 3


def test_a_consolidator_killed_mid_run_with_its_workers_loses_nothing(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with LocalRuntime(settings_for(database_url, sandbox), db=db) as runtime:
        items = load_raw(db, runtime)
    ttl_s = 30
    env = os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint, "CONSOLIDATOR_PROCESSES": "2",
        "CONSOLIDATOR_BATCH_SIZE": "5", "CLAIM_TTL_SECONDS": str(ttl_s),
    }
    proc = subprocess.Popen([sys.executable, "-m", "opus", "consolidate", "--run", RUN_ID], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_diamonds(db, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the consolidator and its worker processes, mid-run
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert 0 < len(diamond_rows(db)) < STONES, "killed mid-run"
    with db.connection() as conn:
        held = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending"
                            " AND claimed_until > now()").fetchone()
    assert held is not None
    assert held["n"] > 0, "the dead consolidator left claims behind"
    # A consolidator whose clock is past the dead one's claims takes them over.
    later = SteppableClock(datetime.now(UTC) + timedelta(seconds=ttl_s + 5))
    with LocalRuntime(settings_for(database_url, sandbox, consolidator_processes=2), db=db, clock=later) as rt:
        drain(rt.deps, RUN_ID, "nivoda")
    assert set(diamond_rows(db)) == {item["diamond"]["id"] for item in items}
    with db.connection() as conn:
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
    assert pending == {"n": 0}


def wait_for_diamonds(db: Database, proc: subprocess.Popen[bytes]) -> int:
    """Poll until the consolidator has written some diamonds (5 a batch); returns how many."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with db.connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM diamonds").fetchone()
        if row is not None and row["n"] >= 50:
            return int(row["n"])
        time.sleep(0.05)
    raise AssertionError(f"no diamonds written (consolidator exit code {proc.poll()})")


def test_a_rule_changed_between_claim_and_write_prices_the_batch(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    """The batch claimed ahead was priced with the rules read at its claim; written after a rule change, it
    carries the new rule's prices and version."""
    settings = settings_for(database_url, sandbox, consolidator_processes=2, consolidator_concurrency=1,
                            consolidator_batch_size=STONES // 2)
    with LocalRuntime(settings, db=db) as runtime:
        load_raw(db, runtime)
        with db.transaction() as conn:
            conn.execute("DELETE FROM pricing_rules")
            conn.execute("INSERT INTO pricing_rules (name, priority, markup_ratio) VALUES ('all', 1, 1.5)")
        batches = consolidate_batches(runtime.deps, RUN_ID, "nivoda", "claimant")
        first = next(batches)  # the second batch is claimed, and handed to the workers, before this returns
        with db.transaction() as conn:
            conn.execute("UPDATE pricing_rules SET markup_ratio = 2")
            version = conn.execute("SELECT last_value FROM pricing_rules_version").fetchone()
        rest = list(batches)
    assert first.consolidated == STONES // 2
    assert sum(b.consolidated for b in rest) == STONES - STONES // 2
    assert version is not None
    with db.connection() as conn:
        second = conn.execute(
            "SELECT d.feed_price, d.price, d.markup_ratio, d.rules_version FROM diamonds d"
            " JOIN raw_diamonds_nivoda r USING (feed, supplier_stone_id)"
            " WHERE r.id > (SELECT min(id) + %s FROM raw_diamonds_nivoda)", (STONES // 2,)).fetchall()
    with db.connection() as conn:
        first_prices = conn.execute(
            "SELECT d.markup_ratio FROM diamonds d JOIN raw_diamonds_nivoda r USING (feed, supplier_stone_id)"
            " WHERE r.id < (SELECT min(id) + %s FROM raw_diamonds_nivoda)", (STONES // 2,)).fetchall()
    assert first_prices
    assert {r["markup_ratio"] for r in first_prices} == {Decimal("1.5")}
    assert second
    for row in second:
        assert row["markup_ratio"] == Decimal(2)
        assert row["price"] == (row["feed_price"] * 2).quantize(Decimal("0.01"))
        assert row["rules_version"] == version["last_value"]


def test_copy_lines_read_back_as_the_values_they_were_made_from(db: Database) -> None:
    values: list[tuple[object, ...]] = [
        ("tab\there", "new\nline", "back\\slash", "cr\rend", "ünïcødé ✓", r"\N"),
        (None, "", "t", "\\t", "end\\", "x" * 500),
    ]
    numbers: tuple[object, ...] = (True, False, 7, Decimal("12.345"), Decimal("1E+2"), None)
    with db.transaction() as conn:
        conn.execute("CREATE TEMP TABLE copied (a text, b text, c text, d text, e text, f text) ON COMMIT DROP")
        conn.execute("CREATE TEMP TABLE copied_numbers (a boolean, b boolean, c integer, d numeric, e numeric,"
                     " f numeric) ON COMMIT DROP")
        with conn.cursor().copy("COPY copied FROM STDIN") as copy:
            copy.write("".join(copy_text_line(v) for v in values))
        with conn.cursor().copy("COPY copied_numbers FROM STDIN") as copy:
            copy.write(copy_text_line(numbers))
        texts = [tuple(r.values()) for r in conn.execute("SELECT * FROM copied")]
        [read_numbers] = [tuple(r.values()) for r in conn.execute("SELECT * FROM copied_numbers")]
    assert texts == values
    assert read_numbers == numbers
    with pytest.raises(TypeError):
        copy_text_line((1.5,))
