"""The RunCoordinator contract: what the pipeline relies on of a coordinator, for the fake, PostgreSQL and Durable.

What every implementation must do, from `opus.ports.RunCoordinator`: `start` is called with the stored plan before
any of its work is enqueued, and is done with the run when it returns (the first announcement may follow at once);
announcements come at least once, so a repeat changes nothing; an announcement for a run that ended, or that it
never heard of, is dropped without raising (raising would only send a work item round to the dead-letter queue).

What a deciding implementation must do besides: once every partition has ended, all ok consolidates the run
exactly once, any failed fails it (with an alert) and consolidates nothing. `RecordingCoordinator` decides nothing
by design (tests read what it was told), so it is held to the first part only; PostgresCoordinator (the rule under
the run's lock) and DurableRunCoordinator (an orchestration per run, over the real SDK client and the real replay
engine of the registered orchestrator, `DurableHost`) to both.

Each harness plans a real run (the sandbox over HTTP, the PostgreSQL queue) and ends partitions the way the worker
does, in `partition_progress`, before announcing them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opus.adapters.postgres_coordinator import PostgresCoordinator
from opus.adapters.postgres_queue import PostgresQueue
from opus.adapters.postgres_state import PostgresAlerts
from opus.azure.durable_coordinator import DurableClientBridge, DurableRunCoordinator
from opus.azure.orchestration import FAIL_ACTIVITY, ORCHESTRATOR_NAME, SETTLE_ACTIVITY
from opus.azure.runtime import AzureRuntime, install_runtime
from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.domain.models import RunPlan, RunType
from opus.feeds.nivoda import NivodaClient
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import fail_run
from opus.pipeline.scheduler import schedule_run
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE, RunCoordinator
from opus.sandbox.inventory import Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.fakes import InMemoryWatermarkStore, RecordingCoordinator, SteppableClock

# The Durable host stand-in and the registered functions live with the Functions tests (function_app.py sits at the
# repository root, outside any package).
ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT, ROOT / "tests" / "functions"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from azure_stack import user_function  # noqa: E402
from durable_host import DurableHost  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning"),
]
CHAINS = 2


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(inventory=Inventory(200, seed=8)) as sb:
        yield sb


@pytest.fixture
def settings(database_url: str, sandbox: RunningSandbox) -> Settings:
    return load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_username=sandbox.username,
        nivoda_password=sandbox.password, nivoda_rate_limit_per_s=10_000, nivoda_read_attempts=1,
        min_records_per_worker=50, max_workers=3, consolidator_concurrency=CHAINS,
    )


@dataclass
class CoordinatorUnderTest:
    coordinator: RunCoordinator
    deps: PipelineDeps
    settle: Callable[[], None]
    """Let the coordinator act on what it was told (the Durable host plays the raised events)."""
    decides: bool


def _deps(db: Database, settings: Settings, feed: NivodaClient) -> PipelineDeps:
    return PipelineDeps(
        db=db, feed=feed, queue=PostgresQueue(db), watermarks=InMemoryWatermarkStore(), alerts=PostgresAlerts(db),
        clock=SteppableClock(datetime.now(UTC).replace(microsecond=0)), settings=settings,
    )


def _durable(db: Database, settings: Settings, feed: NivodaClient) -> Iterator[CoordinatorUnderTest]:
    """The coordinator as a Service Bus trigger runs it: the client's loop in one thread, the pipeline in another."""
    deps = _deps(db, settings, feed)
    runtime = AzureRuntime(settings, db=db, feed=feed, queue=deps.queue, watermarks=deps.watermarks,
                           alerts=deps.alerts, clock=deps.clock)  # what the settle and fail activities run on
    previous = install_runtime(runtime)
    host = DurableHost(user_function(ORCHESTRATOR_NAME),
                       {name: user_function(name) for name in (SETTLE_ACTIVITY, FAIL_ACTIVITY)}, now=deps.clock.now)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="durable-client-loop", daemon=True)
    thread.start()
    coordinator = DurableRunCoordinator(DurableClientBridge(host.client(), loop), clock=deps.clock,
                                        deadline_minutes=settings.run_deadline_minutes)
    try:
        yield CoordinatorUnderTest(coordinator, runtime.deps, host.pump, decides=True)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        install_runtime(previous)
        runtime.close()


def _postgres(db: Database, settings: Settings, feed: NivodaClient) -> Iterator[CoordinatorUnderTest]:
    deps = _deps(db, settings, feed)
    yield CoordinatorUnderTest(PostgresCoordinator(deps), deps, lambda: None, decides=True)


def _recording(db: Database, settings: Settings, feed: NivodaClient) -> Iterator[CoordinatorUnderTest]:
    yield CoordinatorUnderTest(RecordingCoordinator(), _deps(db, settings, feed), lambda: None, decides=False)


IMPLEMENTATIONS = {"recording": _recording, "postgres": _postgres, "durable": _durable}
DECIDING = ("postgres", "durable")


def _under_test(name: str, db: Database, settings: Settings) -> Iterator[CoordinatorUnderTest]:
    with NivodaClient.from_settings(settings) as feed:
        yield from IMPLEMENTATIONS[name](db, settings, feed)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def under_test(request: pytest.FixtureRequest, db: Database, settings: Settings) -> Iterator[CoordinatorUnderTest]:
    yield from _under_test(request.param, db, settings)


@pytest.fixture(params=DECIDING)
def deciding(request: pytest.FixtureRequest, db: Database, settings: Settings) -> Iterator[CoordinatorUnderTest]:
    """The implementations that decide (not the fake, whose tests read what it recorded)."""
    yield from _under_test(request.param, db, settings)


class StartWitness:
    """Delegates to the coordinator, noting what was queued when `start` returned."""

    def __init__(self, inner: RunCoordinator, db: Database) -> None:
        self.inner = inner
        self.db = db
        self.seen: list[tuple[int, int]] = []  # (work items queued, partitions stored) as start returned

    def start(self, plan: RunPlan) -> None:
        self.inner.start(plan)
        self.seen.append((queued(self.db, WORK_QUEUE, plan.run_id), _stored_partitions(self.db, plan.run_id)))

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None:
        self.inner.partition_finished(run_id, partition, ok)


def queued(db: Database, queue: str, run_id: str) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT count(DISTINCT message_id) AS n FROM queue_messages"
                           " WHERE queue = %s AND body ->> 'run_id' = %s", (queue, run_id)).fetchone()
    assert row is not None
    return int(row["n"])


def _stored_partitions(db: Database, run_id: str) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM partition_progress WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return int(row["n"])


def run_status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def planned(t: CoordinatorUnderTest) -> RunPlan:
    plan = schedule_run(t.deps, t.coordinator, RunType.FULL, trigger="contract")
    assert len(plan.partitions) >= 2, "the suite needs a run of several partitions"
    return plan


def end_partition(t: CoordinatorUnderTest, run_id: str, partition: int, ok: bool) -> None:
    """What the worker does: the partition's row ends first, then the partition is announced."""
    with t.deps.db.transaction() as conn:
        conn.execute("UPDATE partition_progress SET status = %s, finished_at = now() WHERE run_id = %s"
                     " AND partition = %s", ("succeeded" if ok else "failed", run_id, partition))
    t.coordinator.partition_finished(run_id, partition, ok)


# --- every implementation -------------------------------------------------------------------------------------------
def test_start_is_done_with_the_stored_plan_before_any_of_its_work_is_queued(under_test: CoordinatorUnderTest) -> None:
    witness = StartWitness(under_test.coordinator, under_test.deps.db)

    plan = schedule_run(under_test.deps, witness, RunType.FULL, trigger="contract")

    assert witness.seen == [(0, len(plan.partitions))]
    assert queued(under_test.deps.db, WORK_QUEUE, plan.run_id) == len(plan.partitions)
    end_partition(under_test, plan.run_id, 0, True)  # the first announcement may follow at once
    under_test.settle()


def test_a_repeated_announcement_is_harmless(under_test: CoordinatorUnderTest) -> None:
    plan = planned(under_test)
    for p in plan.partitions:
        end_partition(under_test, plan.run_id, p.index, True)
        under_test.coordinator.partition_finished(plan.run_id, p.index, True)
    under_test.settle()
    under_test.coordinator.partition_finished(plan.run_id, 0, True)  # after the run was settled too
    under_test.settle()


def test_an_announcement_for_an_unknown_run_is_dropped_without_raising(under_test: CoordinatorUnderTest) -> None:
    unknown = str(uuid.uuid4())

    under_test.coordinator.partition_finished(unknown, 0, True)
    under_test.coordinator.partition_finished(unknown, 1, False)
    under_test.settle()

    assert queued(under_test.deps.db, CONSOLIDATE_QUEUE, unknown) == 0


def test_an_announcement_for_an_ended_run_is_dropped_without_raising(under_test: CoordinatorUnderTest) -> None:
    plan = planned(under_test)
    end_partition(under_test, plan.run_id, 0, False)
    for p in plan.partitions[1:]:
        end_partition(under_test, plan.run_id, p.index, True)
    under_test.settle()
    if under_test.decides:
        assert run_status(under_test.deps.db, plan.run_id) == "failed"
    else:  # the fake decides nothing: the run is ended for it
        fail_run(under_test.deps, plan.run_id, "ended by the test")

    for p in plan.partitions:
        under_test.coordinator.partition_finished(plan.run_id, p.index, True)
    under_test.settle()

    assert run_status(under_test.deps.db, plan.run_id) == "failed"
    assert queued(under_test.deps.db, CONSOLIDATE_QUEUE, plan.run_id) == 0


# --- the implementations that decide --------------------------------------------------------------------------------
def test_every_partition_ok_consolidates_the_run_exactly_once(deciding: CoordinatorUnderTest) -> None:
    repeats = 2  # each announcement arrives twice
    plan = planned(deciding)
    *first, last = reversed(plan.partitions)  # in any order
    for p in first:
        for _ in range(repeats):
            end_partition(deciding, plan.run_id, p.index, True)
    deciding.settle()
    assert (run_status(deciding.deps.db, plan.run_id), queued(deciding.deps.db, CONSOLIDATE_QUEUE, plan.run_id)) \
        == ("running", 0), "a partition still runs"

    for _ in range(repeats):
        end_partition(deciding, plan.run_id, last.index, True)
        deciding.settle()

    assert run_status(deciding.deps.db, plan.run_id) == "consolidating"
    assert queued(deciding.deps.db, CONSOLIDATE_QUEUE, plan.run_id) == CHAINS, "one first link per chain"


def test_a_failed_partition_fails_the_run_with_an_alert_and_consolidates_nothing(
    deciding: CoordinatorUnderTest
) -> None:
    plan = planned(deciding)
    end_partition(deciding, plan.run_id, 1, False)
    for p in plan.partitions:
        if p.index != 1:
            end_partition(deciding, plan.run_id, p.index, True)
    deciding.settle()

    assert run_status(deciding.deps.db, plan.run_id) == "failed"
    assert queued(deciding.deps.db, CONSOLIDATE_QUEUE, plan.run_id) == 0
    with deciding.deps.db.connection() as conn:
        alerts = conn.execute("SELECT run_id FROM alerts").fetchall()
    assert [str(a["run_id"]) for a in alerts] == [plan.run_id]
