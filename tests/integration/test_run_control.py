"""Operating runs: retry of failed partitions, deleting a failed run, forced consolidation, the page cap,
the run deadline, and recovery from a crashed worker. Real PostgreSQL, the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.errors import ConflictError, NotFoundError
from opus.local.run_once import follow_run
from opus.local.runtime import LocalRuntime
from opus.pipeline.runs import expire_overdue_runs
from opus.pipeline.scheduler import schedule_run
from opus.pipeline.worker import handle_work_item
from opus.ports import WORK_QUEUE
from opus.sandbox.runner import RunningSandbox, run_sandbox

SIZE = 1_500


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=SIZE, seed=21) as sb:
        yield sb


class SteppedClock:
    """The clock is a boundary we do not own: tests move it forward instead of waiting."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def make_runtime(db: Database, url: str, sb: RunningSandbox, clock: Any = None, **overrides: Any) -> LocalRuntime:
    values: dict[str, Any] = {
        "database_url": url, "nivoda_endpoint": sb.endpoint, "nivoda_rate_limit_per_s": 10_000,
        "min_records_per_worker": 300, "max_workers": 4, "page_attempts": 1,
        "queue_visibility_timeout_s": 2,
    }
    return LocalRuntime(load_settings(**(values | overrides)), db=db, clock=clock)


@pytest.fixture(autouse=True)
def _no_faults(sandbox: RunningSandbox) -> Iterator[None]:
    sandbox.inventory.faults.configure()
    yield
    sandbox.inventory.faults.configure()


def stored_ids(db: Database) -> list[str]:
    with db.connection() as conn:
        return [r["supplier_stone_id"] for r in conn.execute("SELECT supplier_stone_id FROM diamonds")]


def failed_run(rt: LocalRuntime, sandbox: RunningSandbox) -> str:
    plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
    sandbox.inventory.faults.configure(fail_next=[500] * 40)  # the first pages fail, beyond the client's retries
    result = follow_run(rt, plan.run_id, workers=2, poll_s=0.1)
    sandbox.inventory.faults.configure()
    assert result["status"] == "failed", result
    return plan.run_id


def test_retry_resumes_failed_partitions_and_the_run_completes(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, nivoda_read_attempts=1) as rt:
        run_id = failed_run(rt, sandbox)
        with db.connection() as conn:
            states = {r["status"]: r["n"] for r in conn.execute(
                "SELECT status, count(*) AS n FROM partition_progress WHERE run_id = %s GROUP BY status", (run_id,)
            )}
        assert states.get("failed", 0) >= 1
        unfinished = sum(n for status, n in states.items() if status != "succeeded")
        assert rt.control.retry_partitions(run_id) == unfinished
        result = follow_run(rt, run_id, workers=2, poll_s=0.1)
    assert result["status"] == "completed", result
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)) == SIZE, "nothing lost, nothing duplicated"


def test_a_run_failed_while_consolidating_consolidates_when_retried(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    """Failed after its partitions all succeeded (by its deadline, a guard or an operator), a run is retried with
    nothing to fetch: it must consolidate again, not sit `running` until its next deadline."""
    with make_runtime(db, database_url, sandbox) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        rt.start_consumers(workers=2, consolidators=0)
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while run_status(db, plan.run_id) != "consolidating" and datetime.now(UTC) < deadline:
            rt.queue.receive("nothing", wait_s=0.1)
        rt.stop_consumers()
        assert run_status(db, plan.run_id) == "consolidating"
        rt.control.cancel_run(plan.run_id, by="test")
        assert run_status(db, plan.run_id) == "failed"
        assert rt.control.retry_partitions(plan.run_id) == 0, "every partition had succeeded"
        assert run_status(db, plan.run_id) == "consolidating"
        result = follow_run(rt, plan.run_id, workers=1, poll_s=0.1)
    assert result["status"] == "completed", result
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)) == SIZE, "nothing lost, nothing duplicated"


def run_status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def test_only_failed_runs_can_be_retried_or_deleted(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    with make_runtime(db, database_url, sandbox) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        with pytest.raises(ConflictError, match="running"):
            rt.control.retry_partitions(plan.run_id)
        with pytest.raises(ConflictError, match="running"):
            rt.control.delete_run(plan.run_id)
        with pytest.raises(NotFoundError):
            rt.control.retry_partitions("not-a-run")
        with pytest.raises(NotFoundError):
            rt.control.delete_run("00000000-0000-0000-0000-000000000000")
        with pytest.raises(ConflictError, match="already active"):
            rt.control.start_run("full", trigger="test")
        assert follow_run(rt, plan.run_id, workers=2, poll_s=0.1)["status"] == "completed"
        with pytest.raises(ConflictError, match="completed"):
            rt.control.delete_run(plan.run_id)


def test_deleting_a_failed_run_removes_it_and_its_raw_rows(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, nivoda_read_attempts=1) as rt:
        run_id = failed_run(rt, sandbox)
        rt.control.delete_run(run_id)
    with db.connection() as conn:
        runs = conn.execute("SELECT count(*) AS n FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
        parts = conn.execute("SELECT count(*) AS n FROM partition_progress WHERE run_id = %s", (run_id,)).fetchone()
        raw = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE run_id = %s", (run_id,)).fetchone()
    assert runs == parts == raw == {"n": 0}


def test_forced_consolidation_of_a_failed_run_keeps_it_failed(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, nivoda_read_attempts=1) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        run_id = plan.run_id
        first = rt.queue.receive(WORK_QUEUE, max_messages=1)[0]
        handle_work_item(rt.deps, first.body)  # one page stored, then the feed breaks for good
        rt.queue.complete(first)
        sandbox.inventory.faults.configure(rate_500=1.0)
        assert follow_run(rt, run_id, workers=2, poll_s=0.1)["status"] == "failed"
        sandbox.inventory.faults.configure()
        with db.connection() as conn:
            fetched = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
        assert fetched == {"n": 50}
        rt.control.consolidate(run_id, force=True)
        rt.start_consumers(workers=0, consolidators=1)
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while len(stored_ids(db)) < fetched["n"] and datetime.now(UTC) < deadline:
            rt.queue.receive("nothing", wait_s=0.2)
        rt.stop_consumers()
    assert len(stored_ids(db)) == fetched["n"], "what was fetched is consolidated"
    with db.connection() as conn:
        run = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
        wm = conn.execute("SELECT count(*) AS n FROM watermarks").fetchone()
    assert run == {"status": "failed"}, "an incomplete run is not completed by force"
    assert wm == {"n": 0}, "nor does it move the watermark"


def test_the_page_cap_stops_a_runaway_partition(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    with make_runtime(db, database_url, sandbox, partition_page_cap=2) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        result = follow_run(rt, plan.run_id, workers=2, poll_s=0.1)
    assert result["status"] == "failed"
    with db.connection() as conn:
        errors = [r["error"] for r in conn.execute(
            "SELECT error FROM partition_progress WHERE run_id = %s AND status = 'failed'", (plan.run_id,))]
    assert errors
    assert all("page cap of 2" in e for e in errors)


def test_a_run_past_its_deadline_fails(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    clock = SteppedClock()
    with make_runtime(db, database_url, sandbox, clock=clock, run_deadline_minutes=30) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        assert expire_overdue_runs(rt.deps) == []
        clock.offset = timedelta(minutes=31)
        assert expire_overdue_runs(rt.deps) == [plan.run_id]
        # The stuck run no longer blocks the next one.
        assert rt.control.start_run("full", trigger="test") != plan.run_id
    with db.connection() as conn:
        run = conn.execute("SELECT status, failure_reason FROM run_metadata WHERE run_id = %s",
                           (plan.run_id,)).fetchone()
    assert run == {"status": "failed", "failure_reason": "deadline exceeded"}


def test_a_crashed_worker_is_recovered_with_nothing_lost_or_duplicated(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, page_attempts=5) as rt:
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        # A worker takes every first page and dies: its messages stay locked until their visibility runs out.
        taken = rt.queue.receive(WORK_QUEUE, max_messages=100, visibility_timeout_s=1)
        assert len(taken) == len(plan.partitions)
        result = follow_run(rt, plan.run_id, workers=2, poll_s=0.1)
    assert result["status"] == "completed", result
    ids = stored_ids(db)
    assert len(ids) == len(set(ids)) == SIZE


def test_a_density_count_that_fails_is_tried_again_and_the_run_plans(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    """One count failing past the client's retries used to fail the whole run's planning: at 10 % faults the scan's
    hundreds of counts made that likely. A count is tried as often as a page."""
    with make_runtime(db, database_url, sandbox, nivoda_read_attempts=1, page_attempts=3) as rt:
        sandbox.inventory.faults.configure(fail_next=[503, 503])  # the first count fails twice, then answers
        plan = schedule_run(rt.deps, rt.coordinator, RunType.FULL)
        sandbox.inventory.faults.configure()
        assert plan.partitions, "planned"
        assert follow_run(rt, plan.run_id, workers=2, poll_s=0.1)["status"] == "completed"
    assert len(stored_ids(db)) == SIZE
