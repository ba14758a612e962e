"""Chaos: faults, crashes and bad records during whole runs; the catalogue must still equal the feed exactly.

The comparison reads the sandbox's inventory directly (`sandbox.inventory`), never through Opus's client, so a
client defect cannot make both sides agree. Every test is bounded in time (pytest-timeout, the suite's default).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.errors import ConflictError
from opus.local.run_once import follow_run, run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.scheduler import schedule_run
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.e2e
# The feed's spelling of availability -> ours (the mapping's rule, restated here from nivoda-api.md).
AVAILABILITY = {"AVAILABLE": "AVAILABLE", "ON HOLD": "ON_HOLD", "SOLD": "SOLD", "MEMO": "MEMO"}


def settings_for(url: str, sb: RunningSandbox, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "database_url": url, "nivoda_endpoint": sb.endpoint, "nivoda_rate_limit_per_s": 10_000,
        "min_records_per_worker": 500, "max_workers": 8, "consolidator_batch_size": 1000,
    }
    return load_settings(**(values | overrides))


def assert_catalogue_is_the_feed(db: Database, sb: RunningSandbox) -> None:
    """Every listed stone once, active, at the feed's price and availability; nothing else active."""
    with db.connection() as conn:
        rows = conn.execute("SELECT supplier_stone_id, feed_price, availability, status FROM diamonds").fetchall()
    stored = {r["supplier_stone_id"]: r for r in rows}
    assert len(stored) == len(rows), "no duplicate stones"
    feed = {s.stone_id: s for s in sb.inventory.stones()}
    active = {s for s, r in stored.items() if r["status"] == "active"}
    assert active == set(feed), f"{len(set(feed) - active)} listed stones missing, {len(active - set(feed))} extra"
    wrong = [s for s, stone in feed.items()
             if stored[s]["feed_price"] != Decimal(stone.price_cents) / 100
             or stored[s]["availability"] != AVAILABILITY[stone.availability]]
    assert wrong == [], f"{len(wrong)} stones differ from the feed"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """The issue's 10,000 stones, for the runs under faults and kills."""
    with run_sandbox(diamonds=10_000, seed=51) as sb:
        yield sb


@pytest.fixture
def large_sandbox() -> Iterator[RunningSandbox]:
    """The issue's 20,000 stones, for the run under SIGKILLs."""
    with run_sandbox(diamonds=20_000, seed=53) as sb:
        yield sb


@pytest.fixture
def small_sandbox() -> Iterator[RunningSandbox]:
    """Enough stones for several partitions, where the size proves nothing more."""
    with run_sandbox(diamonds=3_000, seed=52) as sb:
        yield sb


def test_ten_percent_transient_faults_of_every_kind_lose_nothing(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    sandbox.inventory.faults.configure(
        rate_429=0.02, rate_500=0.015, rate_502=0.01, rate_503=0.01, rate_drop=0.01, rate_slow=0.01,
        rate_graphql_error=0.015, rate_truncate=0.015, slow_ms=4500, retry_after_s=1, short_page_rate=0.05,
        token_max_requests=150, seed=5,
    )
    # Slow answers outlast the client's timeout by far, so that only they time out: an answer delayed by a busy
    # machine (the sandbox shares this process) has 3 s.
    settings = settings_for(database_url, sandbox, nivoda_timeout_s=3.0, page_attempts=10)
    try:
        with LocalRuntime(settings, db=db) as rt:
            result = run_once(rt, RunType.FULL, workers=8, poll_s=0.2)
    finally:
        sandbox.inventory.faults.configure()
    assert result["status"] == "completed", result
    assert_catalogue_is_the_feed(db, sandbox)


def test_a_permanent_fault_fails_the_run_and_a_retry_completes_it_exactly(
    db: Database, database_url: str, small_sandbox: RunningSandbox
) -> None:
    with LocalRuntime(settings_for(database_url, small_sandbox), db=db) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        small_sandbox.inventory.faults.configure(fail_next=[400])  # the next page is refused outright
        try:
            failed = follow_run(rt, plan.run_id, workers=4, poll_s=0.1)
        finally:
            small_sandbox.inventory.faults.configure()
        assert failed["status"] == "failed", failed
        with db.connection() as conn:
            consolidated = conn.execute("SELECT count(*) AS n FROM diamonds").fetchone()
            alerts = conn.execute("SELECT kind FROM alerts WHERE run_id = %s", (plan.run_id,)).fetchall()
            watermark = conn.execute("SELECT count(*) AS n FROM watermarks").fetchone()
        assert consolidated == {"n": 0}, "nothing is consolidated"
        assert watermark == {"n": 0}, "the watermark did not move"
        assert [a["kind"] for a in alerts] == ["run_failed"]
        rt.control.retry_partitions(plan.run_id)
        retried = follow_run(rt, plan.run_id, workers=4, poll_s=0.1)
    assert retried["status"] == "completed", retried
    assert_catalogue_is_the_feed(db, small_sandbox)


def test_malformed_records_are_logged_with_their_reason_and_every_good_one_is_consolidated(
    db: Database, database_url: str, small_sandbox: RunningSandbox
) -> None:
    small_sandbox.inventory.faults.configure(
        malformed={"null_id": 0.01, "price_not_number": 0.01, "wrong_type": 0.01, "eye_clean_text": 0.02,
                   "fancy_without_color": 0.02, "flo_abbreviation": 0.02, "labgrown_null": 0.02,
                   "image_on_certificate_only": 0.02, "video_fallback_only": 0.02, "nul_in_text": 0.01}, seed=8)
    try:
        with LocalRuntime(settings_for(database_url, small_sandbox), db=db) as rt:
            result = run_once(rt, RunType.FULL, workers=8, poll_s=0.2)
    finally:
        small_sandbox.inventory.faults.configure()
    assert result["status"] == "completed", result
    with db.connection() as conn:
        errors = conn.execute("SELECT source, supplier_stone_id, field, message FROM error_logs").fetchall()
        stored = {r["supplier_stone_id"] for r in conn.execute("SELECT supplier_stone_id FROM diamonds")}
    assert errors, "malformed records were served"
    assert all(e["message"] for e in errors), "each has its reason"
    assert any("cannot store" in e["message"] for e in errors), "records jsonb refuses were served"
    unkeyed = [e for e in errors if e["supplier_stone_id"] is None]
    rejected = {e["supplier_stone_id"] for e in errors if e["supplier_stone_id"] is not None}
    assert unkeyed, "records without a stone id were served"
    assert all(e["field"] == "diamond.id" for e in unkeyed)
    feed = {s.stone_id for s in small_sandbox.inventory.stones()}
    assert stored | rejected <= feed
    assert not stored & rejected, "a rejected record is not consolidated"
    assert len(stored) + len(rejected) + len(unkeyed) == len(feed), "every good record is consolidated"
    assert result["errors"] == len(errors)


def test_two_schedulers_started_at_once_create_one_run(
    db: Database, database_url: str, small_sandbox: RunningSandbox
) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def schedule() -> None:
        with LocalRuntime(settings_for(database_url, small_sandbox), db=db) as rt:
            barrier.wait()
            try:
                outcomes.append(schedule_run(rt.deps, rt.coordinator, RunType.FULL).run_id)
            except ConflictError:
                outcomes.append("conflict")

    threads = [threading.Thread(target=schedule) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o == "conflict" for o in outcomes) == [False, True]
    with db.connection() as conn:
        runs = conn.execute("SELECT count(*) AS n FROM run_metadata").fetchone()
    assert runs == {"n": 1}


@pytest.mark.timeout(330)
def test_sigkills_of_workers_consolidators_and_the_api_lose_and_duplicate_nothing(
    db: Database, database_url: str, large_sandbox: RunningSandbox
) -> None:
    sandbox = large_sandbox
    env = os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint, "NIVODA_RATE_LIMIT_PER_S": "10000",
        "MIN_RECORDS_PER_WORKER": "1000", "MAX_WORKERS": "8", "CONSOLIDATOR_BATCH_SIZE": "500",
        # Short locks and claims keep the test short; the defaults' recovery times are tested in tests/e2e.
        "QUEUE_VISIBILITY_TIMEOUT_S": "4", "CLAIM_TTL_SECONDS": "6", "CONSOLIDATOR_SLICE_S": "3",
        "HOUSEKEEPING_INTERVAL_S": "2",
    }
    opus = [sys.executable, "-m", "opus"]
    sandbox.inventory.faults.configure(latency_ms=30)
    planned = subprocess.run([*opus, "schedule", "--full"], env=env, capture_output=True, text=True, check=True,
                             timeout=120)
    run_id = json.loads(planned.stdout.strip().splitlines()[-1])["run_id"]
    commands = {
        "worker": [*opus, "worker", "--workers", "4", "--consolidators", "0"],
        "consolidator": [*opus, "worker", "--workers", "0", "--consolidators", "2"],
        "api": [*opus, "serve", "--port", "0"],
    }
    procs = {name: subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, cmd in commands.items()}
    rng = random.Random(7)
    kills: list[tuple[str, str]] = []  # (process, the run's status when it was killed)
    deadline = time.monotonic() + 220

    def status() -> str:
        with db.connection() as conn:
            row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
        return str(row["status"]) if row else "missing"

    def kill(name: str, during: str) -> None:
        procs[name].send_signal(signal.SIGKILL)
        procs[name].wait(timeout=10)
        procs[name] = subprocess.Popen(commands[name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kills.append((name, during))

    def left_in_queues() -> list[dict[str, Any]]:
        with db.connection() as conn:
            return conn.execute("SELECT queue, state, count(*) AS n FROM queue_messages WHERE body->>'run_id' = %s"
                                " AND state IN ('ready', 'dead') GROUP BY queue, state", (run_id,)).fetchall()

    try:
        while (now := status()) not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 2.5))
            # Nine kills in turn while the pages are fetched, then the consolidators again while they work.
            if now == "running" and len(kills) < 9:
                kill(["worker", "consolidator", "api"][len(kills) % 3], now)
            elif now == "consolidating" and sum(during == "consolidating" for _, during in kills) < 3:
                kill(rng.choice(["consolidator", "consolidator", "api"]), now)
        # A chain's last link may still be due (scheduled for when claims would have expired): the live
        # consumers take it and drop it, the run being over. Nothing may stay ready, or die.
        while left_in_queues() and time.monotonic() < deadline + 30:
            time.sleep(0.5)
    finally:
        sandbox.inventory.faults.configure()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert len(kills) >= 10, f"only {len(kills)} kills landed before the run ended: {kills}"
    assert {name for name, _ in kills} == {"worker", "consolidator", "api"}
    assert any(during == "consolidating" for _, during in kills), kills
    with db.connection() as conn:
        progress = conn.execute("SELECT count(*) FILTER (WHERE pending) AS pending, count(*) FILTER"
                                " (WHERE claimed_by IS NOT NULL) AS claimed FROM raw_diamonds_nivoda").fetchone()
        chains = conn.execute("SELECT message_id, state, delivery_count, visible_at - now() AS due_in"
                              " FROM queue_messages WHERE queue = 'consolidate' ORDER BY id DESC LIMIT 6").fetchall()
    assert status() == "completed", f"{status()} after kills {kills}; raw rows {progress}; last links {chains}"
    assert_catalogue_is_the_feed(db, sandbox)
    with db.connection() as conn:
        stuck = conn.execute("SELECT count(*) AS n FROM partition_progress WHERE run_id = %s"
                             " AND status <> 'succeeded'", (run_id,)).fetchone()
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
        completed = conn.execute("SELECT run_id, feed, watermark FROM run_metadata"
                                 " WHERE status = 'completed'").fetchall()
        published = conn.execute("SELECT feed, value FROM watermarks").fetchall()
    assert stuck == {"n": 0}
    assert pending == {"n": 0}
    assert left_in_queues() == [], "no message left ready or dead-lettered in either queue"
    assert [str(r["run_id"]) for r in completed] == [run_id], "one run completed: the watermark moved once"
    assert published == [{"feed": completed[0]["feed"], "value": completed[0]["watermark"]}], (
        "the published watermark is the run's")
