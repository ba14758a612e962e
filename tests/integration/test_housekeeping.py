"""Housekeeping repairs what a crash or a lost message leaves behind, on any runtime (a stepped clock, no sleeps)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.local.run_once import follow_run, run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.housekeeping import run_housekeeping
from opus.pipeline.scheduler import schedule_run
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.e2e


class SteppedClock:
    """Real time plus an offset the test moves forward (the database's own `now()` stays real: rows it stamps
    look older as the offset grows, which is what the passing of time does)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=1_200, seed=61) as sb:
        yield sb


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def runtime(db: Database, database_url: str, sandbox: RunningSandbox, clock: SteppedClock) -> Iterator[LocalRuntime]:
    settings = load_settings(database_url=database_url, nivoda_endpoint=sandbox.endpoint,
                             nivoda_rate_limit_per_s=10_000, min_records_per_worker=300, max_workers=3)
    with LocalRuntime(settings, db=db, clock=clock) as rt:
        yield rt


def status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def lose_all(rt: LocalRuntime, queue: str) -> list[Any]:
    """Receive and complete every message without handling it: lost, as a crash between the two would lose it."""
    lost = rt.queue.receive(queue, max_messages=1000, visibility_timeout_s=60)
    for msg in lost:
        rt.queue.complete(msg)
    return lost


def test_a_partition_whose_message_was_lost_is_revived(runtime: LocalRuntime, db: Database,
                                                      clock: SteppedClock) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    assert len(lose_all(runtime, WORK_QUEUE)) == len(plan.partitions)
    assert run_housekeeping(runtime.deps).revived_partitions == 0, "not stalled yet"
    clock.offset = timedelta(seconds=runtime.settings.partition_stall_s + 5)
    assert run_housekeeping(runtime.deps).revived_partitions == len(plan.partitions)
    assert run_housekeeping(runtime.deps).revived_partitions == 0, "revived once, not again at once"
    assert follow_run(runtime, plan.run_id, workers=3, poll_s=0.1)["status"] == "completed"


def test_a_consolidation_whose_messages_were_lost_is_restarted(runtime: LocalRuntime, db: Database,
                                                              clock: SteppedClock) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    runtime.start_consumers(workers=3, consolidators=0, housekeeping=False)
    try:
        deadline = time.monotonic() + 60
        while status(db, plan.run_id) == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runtime.stop_consumers()
    assert status(db, plan.run_id) == "consolidating"
    assert lose_all(runtime, CONSOLIDATE_QUEUE), "the consolidation chains were enqueued, then lost"
    assert run_housekeeping(runtime.deps).revived_consolidations == []
    s = runtime.settings
    clock.offset = timedelta(seconds=s.claim_ttl_seconds + 2 * s.consolidator_slice_s + 61)
    assert run_housekeeping(runtime.deps).revived_consolidations == [plan.run_id]
    assert follow_run(runtime, plan.run_id, workers=0, poll_s=0.1)["status"] == "completed"


def test_a_run_whose_last_announcement_was_lost_is_settled(runtime: LocalRuntime, db: Database) -> None:
    plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL)
    lose_all(runtime, WORK_QUEUE)
    with db.transaction() as conn:  # every partition ended, but the coordinator never heard of it
        conn.execute("UPDATE partition_progress SET status = 'succeeded' WHERE run_id = %s", (plan.run_id,))
    assert run_housekeeping(runtime.deps).settled == [plan.run_id]
    assert status(db, plan.run_id) == "consolidating"


def test_a_watermark_that_was_not_published_is_published_again(runtime: LocalRuntime, db: Database) -> None:
    result = run_once(runtime, RunType.FULL, workers=3, poll_s=0.1)
    assert result["status"] == "completed"
    with db.transaction() as conn:  # the publish after the commit failed
        conn.execute("DELETE FROM watermarks")
    assert runtime.deps.watermarks.get("nivoda") is None
    assert run_housekeeping(runtime.deps).published == ["nivoda"]
    assert runtime.deps.watermarks.get("nivoda") == datetime.fromisoformat(result["watermark"])
