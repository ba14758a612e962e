"""The run's steps one message at a time: page worker, coordinator, consolidator (real PostgreSQL, sandbox)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from opus.config import load_settings
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.models import RunType
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import consolidate_batch, consolidate_run
from opus.pipeline.coordinator import settle_run
from opus.pipeline.raw_store import payload_hash
from opus.pipeline.scheduler import schedule_run
from opus.pipeline.worker import handle_work_item
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE
from opus.sandbox.runner import RunningSandbox, run_sandbox

RAW = Queries("raw")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=1_200, seed=5) as sb:
        yield sb


@pytest.fixture
def runtime(db: Database, database_url: str, sandbox: RunningSandbox) -> Iterator[LocalRuntime]:
    sandbox.inventory.faults.configure()
    settings = load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_rate_limit_per_s=10_000,
        min_records_per_worker=300, max_workers=4, consolidator_batch_size=500, consolidator_concurrency=1,
    )
    with LocalRuntime(settings, db=db) as rt:
        yield rt


def take(rt: LocalRuntime, queue: str = WORK_QUEUE) -> list[Any]:
    """Everything visible on a queue, received (locked) and returned."""
    return rt.queue.receive(queue, max_messages=1000, visibility_timeout_s=60)


def partition(db: Database, run_id: str, index: int) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute(
            "SELECT * FROM partition_progress WHERE run_id = %s AND partition = %s", (run_id, index)
        ).fetchone()
    assert row is not None
    return row


def raw_count(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda").fetchone()
    return int(row["n"]) if row else 0


def drive_partition(rt: LocalRuntime, first: Any) -> int:
    """Handle a partition's messages one by one until it ends; returns how many pages were handled."""
    pending, pages = [first], 0
    while pending:
        msg = pending.pop()
        for finished in handle_work_item(rt.deps, msg.body).finished:
            rt.announce(finished)  # what a runtime does with the handler's outcome
        rt.queue.complete(msg)
        pages += 1
        pending = [m for m in take(rt) if m.body["partition"] == first.body["partition"]]
    return pages


def test_the_same_message_twice_stores_its_page_once(runtime: LocalRuntime, db: Database) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    assert len(plan.partitions) > 1
    first = next(m for m in take(runtime) if m.body["partition"] == 0)
    handle_work_item(runtime.deps, first.body)
    after_one = partition(db, plan.run_id, 0)
    rows = raw_count(db)
    handle_work_item(runtime.deps, first.body)  # a duplicate delivery of the same page
    after_two = partition(db, plan.run_id, 0)
    assert after_one["next_offset"] == after_two["next_offset"] == 50
    assert after_two["pages"] == 1
    assert raw_count(db) == rows == 50
    continuations = [m for m in take(runtime) if m.body["partition"] == 0]
    assert [m.body["offset"] for m in continuations] == [50], "the continuation is sent once"


def test_a_redelivery_after_commit_resends_a_lost_continuation(runtime: LocalRuntime, db: Database) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    first = next(m for m in take(runtime) if m.body["partition"] == 0)
    handle_work_item(runtime.deps, first.body)
    with db.transaction() as conn:  # the crash: the page committed, its continuation never reached the queue
        conn.execute("DELETE FROM queue_messages WHERE message_id = %s", (f"{plan.run_id}:0:50",))
    assert not [m for m in take(runtime) if m.body["partition"] == 0]
    handle_work_item(runtime.deps, first.body)  # the lock expired: redelivered
    assert [m.body["offset"] for m in take(runtime) if m.body["partition"] == 0] == [50]
    assert partition(db, plan.run_id, 0)["pages"] == 1


def test_short_pages_mid_range_lose_nothing(runtime: LocalRuntime, db: Database, sandbox: RunningSandbox) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    sandbox.inventory.faults.configure(short_page_rate=0.5, seed=3)
    try:
        for msg in take(runtime):
            drive_partition(runtime, msg)
    finally:
        sandbox.inventory.faults.configure()
    parts = [partition(db, plan.run_id, p.index) for p in plan.partitions]
    assert all(p["status"] == "succeeded" for p in parts)
    assert sum(p["pages"] for p in parts) > len(sandbox.inventory.stones()) / 50 + len(parts), "pages were short"
    with db.connection() as conn:
        stored = {r["supplier_stone_id"] for r in conn.execute("SELECT supplier_stone_id FROM raw_diamonds_nivoda")}
    assert stored == {s.stone_id for s in sandbox.inventory.stones()}
    assert len(take(runtime, CONSOLIDATE_QUEUE)) == 1, "all partitions done: consolidation enqueued once"


def test_an_empty_page_ends_the_partition(runtime: LocalRuntime, db: Database) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    for msg in take(runtime):
        drive_partition(runtime, msg)
    consolidate_run(runtime.deps, plan.run_id)
    # Nothing changed since: the incremental window is empty, one partition, one empty page.
    incremental = schedule_run(runtime.deps, runtime.coordinator, RunType.INCREMENTAL)
    assert incremental.run_type is RunType.INCREMENTAL
    [msg] = take(runtime)
    assert drive_partition(runtime, msg) == 1
    assert partition(db, incremental.run_id, 0)["status"] == "succeeded"
    assert partition(db, incremental.run_id, 0)["next_offset"] == 0


def test_concurrent_completions_enqueue_one_consolidation(
    runtime: LocalRuntime, db: Database, concurrently: Callable[[Callable[[], str], int], list[str]]
) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    take(runtime)
    with db.transaction() as conn:
        conn.execute("UPDATE partition_progress SET status = 'succeeded' WHERE run_id = %s", (plan.run_id,))
    outcomes = concurrently(lambda: settle_run(runtime.deps, plan.run_id), 8)
    assert outcomes == ["consolidating"] * 8
    with db.connection() as conn:
        sent = conn.execute(
            "SELECT count(*) AS n FROM queue_messages WHERE queue = %s", (CONSOLIDATE_QUEUE,)
        ).fetchone()
        run = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (plan.run_id,)).fetchone()
    assert sent == {"n": 1}
    assert run == {"status": "consolidating"}
    with db.connection() as conn:
        marked = conn.execute(
            "SELECT consolidation_enqueued_at FROM run_metadata WHERE run_id = %s", (plan.run_id,)
        ).fetchone()
    assert marked is not None
    assert marked["consolidation_enqueued_at"] is not None


def test_a_failed_partition_fails_the_run(runtime: LocalRuntime, db: Database) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    take(runtime)
    with db.transaction() as conn:
        conn.execute("UPDATE partition_progress SET status = 'succeeded' WHERE run_id = %s", (plan.run_id,))
        conn.execute(
            "UPDATE partition_progress SET status = 'failed', error = 'boom' WHERE run_id = %s AND partition = 1",
            (plan.run_id,),
        )
    assert settle_run(runtime.deps, plan.run_id) == "failed"
    with db.connection() as conn:
        run = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (plan.run_id,)).fetchone()
        alerts = conn.execute("SELECT count(*) AS n FROM alerts WHERE run_id = %s", (plan.run_id,)).fetchone()
    assert run == {"status": "failed"}
    assert alerts == {"n": 1}
    assert take(runtime, CONSOLIDATE_QUEUE) == []


def store_raw(db: Database, run_id: str, rows: dict[str, Any]) -> None:
    with db.transaction() as conn:
        for key, payload in rows.items():
            conn.execute(
                "INSERT INTO raw_diamonds_nivoda (feed, supplier_stone_id, payload, payload_hash, run_id, seen_run_id)"
                " VALUES ('nivoda', %s, %s, %s, %s, %s)",
                (key, Jsonb(payload), payload_hash(payload), run_id, run_id),
            )


def sandbox_items(runtime: LocalRuntime, n: int) -> list[dict[str, Any]]:
    from opus.domain.models import FeedQuery

    return runtime.deps.feed.page(FeedQuery(), 0, n)


def diamonds(db: Database) -> dict[str, dict[str, Any]]:
    with db.connection() as conn:
        return {r["supplier_stone_id"]: r for r in conn.execute("SELECT * FROM diamonds")}


def test_consolidator_takes_over_expired_claims(runtime: LocalRuntime, db: Database) -> None:
    items = sandbox_items(runtime, 40)
    run_id = "00000000-0000-0000-0000-000000000001"
    store_raw(db, run_id, {i["diamond"]["id"]: i for i in items})
    with db.transaction() as conn:  # a consolidator claimed everything, then died
        claimed = conn.execute("UPDATE raw_diamonds_nivoda SET claimed_by = 'crashed',"
                               " claimed_until = now() + interval '0.5 s' WHERE pending").rowcount
    assert claimed == 40
    assert consolidate_batch(runtime.deps, run_id, "nivoda", "live") is None, "claims still valid"
    time.sleep(0.6)  # past the crashed claimant's TTL
    result = consolidate_batch(runtime.deps, run_id, "nivoda", "live")
    assert result is not None
    assert result.consolidated == 40
    assert len(diamonds(db)) == 40


def test_duplicate_keys_in_one_batch_keep_the_latest(runtime: LocalRuntime, db: Database) -> None:
    [item] = sandbox_items(runtime, 1)
    older = item | {"price": 100_000}
    newer = item | {"price": 123_456}
    store_raw(db, "00000000-0000-0000-0000-000000000002", {"key-a": older, "key-b": newer})
    result = consolidate_batch(runtime.deps, "00000000-0000-0000-0000-000000000002", "nivoda", "c1")
    assert result is not None
    assert result.consolidated == 1
    [row] = diamonds(db).values()
    assert str(row["feed_price"]) == "1234.56"


def test_a_broken_record_is_logged_and_the_rest_stored(runtime: LocalRuntime, db: Database) -> None:
    items = sandbox_items(runtime, 5)
    broken = items[0] | {"price": "not a price"}
    rows = {i["diamond"]["id"]: i for i in items[1:]} | {"broken": broken}
    store_raw(db, "00000000-0000-0000-0000-000000000003", rows)
    result = consolidate_batch(runtime.deps, "00000000-0000-0000-0000-000000000003", "nivoda", "c1")
    assert result is not None
    assert (result.consolidated, result.errors) == (4, 1)
    assert set(diamonds(db)) == {i["diamond"]["id"] for i in items[1:]}
    with db.connection() as conn:
        errors = conn.execute("SELECT supplier_stone_id, field, message FROM error_logs").fetchall()
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
    assert [(e["supplier_stone_id"], e["field"]) for e in errors] == [("broken", "price")]
    assert pending == {"n": 0}, "the broken record is not retried forever"


def test_a_full_run_confirms_unseen_stones_before_deleting_them(
    runtime: LocalRuntime, db: Database, sandbox: RunningSandbox
) -> None:
    first = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    for msg in take(runtime):
        drive_partition(runtime, msg)
    assert consolidate_run(runtime.deps, first.run_id) == "completed"
    gone = set(sandbox.inventory.remove(3, seed=8))
    second = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    for msg in take(runtime):
        drive_partition(runtime, msg)
    # Four listed stones were missed by the paging (as when a stone is repriced into a range already paged).
    missed = sorted(s.stone_id for s in sandbox.inventory.stones())[:4]
    with db.transaction() as conn:
        conn.execute("UPDATE raw_diamonds_nivoda SET seen_run_id = %s WHERE supplier_stone_id = ANY(%s)",
                     (first.run_id, missed))
    assert consolidate_run(runtime.deps, second.run_id) == "completed"
    stored = diamonds(db)
    assert {s for s, r in stored.items() if r["status"] == "deleted"} == gone
    assert all(stored[s]["status"] == "active" for s in missed)
    with db.connection() as conn:
        run = conn.execute("SELECT deleted FROM run_metadata WHERE run_id = %s", (second.run_id,)).fetchone()
    assert run == {"deleted": 3}
