"""DurableRunCoordinator over the real SDK client, from a worker thread, as a Service Bus trigger runs it.

The double sits at the boundary we do not own: the Durable extension's HTTP API on the far side of
`DurableOrchestrationClient`. The SDK client is real, so its own handling of the extension's answers (404, 410,
500 ...) is what the coordinator meets. Replacing the client's request functions on the instance is how the SDK's
own tests reach that boundary too. Each test runs the coordinator the way the trigger does: an `async def` makes
the bridge on its loop, and the pipeline code runs in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import azure.durable_functions as df
import pytest
from durable_history import ActionType, DurableHistory, flat_actions

from opus.azure.durable_coordinator import (
    BridgeMisuseError,
    DurableClientBridge,
    DurableRunCoordinator,
    OrchestrationStatus,
)
from opus.azure.orchestration import (
    MAX_DEADLINE_MINUTES,
    ORCHESTRATOR_NAME,
    SETTLE_ACTIVITY,
    OrchestrationInput,
    run_orchestrator,
)
from opus.domain.models import Partition, RunPlan, RunType
from opus.errors import TransientError

# The SDK's notice about decoding custom objects without a declared type; our payloads are plain JSON.
pytestmark = pytest.mark.filterwarnings(
    "ignore:azure.functions df_loads was called without expected_type:DeprecationWarning"
)
T = TypeVar("T")
RPC_BASE_URL = "http://127.0.0.1:17071/durabletask/"
RUN_ID = "5d0c8f0e-7d43-4f4e-8a59-0f7b8c2a6b11"
NOW = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
DEADLINE_MINUTES = 90
FINISHED = ("Completed", "Failed", "Terminated")


class SteppedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def step(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class Instance:
    name: str
    input: Any
    status: str = "Running"
    events: list[tuple[str, Any]] = field(default_factory=list)


class FakeDurableExtension:
    """The extension's HTTP API as the SDK client calls it: instances, raised events, scripted failures."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.requests: list[tuple[str, str]] = []
        self._failures: list[tuple[int, Any] | BaseException] = []
        self.stalled = False

    def client(self) -> Any:
        binding = {"taskHubName": "OpusHub", "creationUrls": {}, "managementUrls": {}, "rpcBaseUrl": RPC_BASE_URL}
        client = df.DurableOrchestrationClient(json.dumps(binding))
        client._post_async_request = self._post
        client._get_async_request = self._get
        return client

    def fail_next(self, answer: tuple[int, Any] | BaseException) -> None:
        """The next request gets this status and body, or raises this error (a lost connection)."""
        self._failures.append(answer)

    async def _answer_scripted(self) -> list[Any] | None:
        if self.stalled:
            await asyncio.Event().wait()
        if not self._failures:
            return None
        failure = self._failures.pop(0)
        if isinstance(failure, BaseException):
            raise failure
        return list(failure)

    async def _post(self, url: str, data: Any = None, *_trace: Any, **_headers: Any) -> list[Any]:
        path = url.removeprefix(RPC_BASE_URL)
        self.requests.append(("POST", path))
        scripted = await self._answer_scripted()
        if scripted is not None:
            return scripted
        parts = urlsplit(path).path.split("/")
        if parts[0] == "orchestrators":
            name, instance_id = parts[1], parts[2]
            self.instances[instance_id] = Instance(name, json.loads(data))
            return [202, {"id": instance_id}]
        if parts[0] == "instances" and parts[2] == "raiseEvent":
            instance = self.instances.get(parts[1])
            if instance is None:
                return [404, None]
            if instance.status in FINISHED:
                return [410, None]
            # The SDK sends the event data as JSON text inside the JSON body.
            instance.events.append((parts[3], json.loads(data)))
            return [202, None]
        raise AssertionError(f"unexpected request POST {path}")

    async def _get(self, url: str, *_headers: Any, **_kw: Any) -> list[Any]:
        path = url.removeprefix(RPC_BASE_URL)
        self.requests.append(("GET", path))
        scripted = await self._answer_scripted()
        if scripted is not None:
            return scripted
        instance_id = urlsplit(path).path.split("/")[1]
        instance = self.instances.get(instance_id)
        if instance is None:
            return [404, ""]
        body = {
            "name": instance.name, "instanceId": instance_id, "runtimeStatus": instance.status,
            "createdTime": "2024-05-01T02:00:00Z", "lastUpdatedTime": "2024-05-01T02:00:01Z",
        }
        return [200 if instance.status in FINISHED else 202, body]


@pytest.fixture
def extension() -> FakeDurableExtension:
    return FakeDurableExtension()


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock(NOW)


def in_trigger(
    extension: FakeDurableExtension, clock: SteppedClock, work: Callable[[DurableRunCoordinator], T],
    *, timeout_s: float = 5.0,
) -> T:
    """Run `work` as a Service Bus trigger would: bridge made on the invocation's loop, work in a thread."""

    async def trigger() -> T:
        bridge = DurableClientBridge.on_running_loop(extension.client(), timeout_s=timeout_s)
        coordinator = DurableRunCoordinator(bridge, clock=clock, deadline_minutes=DEADLINE_MINUTES)
        return await asyncio.to_thread(work, coordinator)

    return asyncio.run(trigger())


def plan(*indexes: int) -> RunPlan:
    partitions = tuple(Partition(i, i * 1_000, (i + 1) * 1_000, 2_000) for i in indexes)
    return RunPlan(RUN_ID, "nivoda", RunType.FULL, None, NOW, partitions)


def started(extension: FakeDurableExtension, clock: SteppedClock, *indexes: int) -> Instance:
    in_trigger(extension, clock, lambda c: c.start(plan(*indexes)))
    return extension.instances[RUN_ID]


# --- start ---------------------------------------------------------------------------------------------------------
def test_start_runs_the_orchestrator_under_the_run_id_with_partitions_and_deadline(
    extension: FakeDurableExtension, clock: SteppedClock
) -> None:
    instance = started(extension, clock, 0, 1, 2)

    assert extension.requests == [("POST", f"orchestrators/{ORCHESTRATOR_NAME}/{RUN_ID}")]
    assert instance.name == ORCHESTRATOR_NAME
    spec = OrchestrationInput.from_json(instance.input)
    assert spec == OrchestrationInput(RUN_ID, (0, 1, 2), NOW + timedelta(minutes=DEADLINE_MINUTES))


def test_the_deadline_counts_from_the_clock_at_start(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    clock.step(timedelta(hours=3))

    instance = started(extension, clock, 0)

    assert OrchestrationInput.from_json(instance.input).deadline == NOW + timedelta(hours=3, minutes=DEADLINE_MINUTES)


def test_a_failed_start_is_transient(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    extension.fail_next((500, "Microsoft.Azure.WebJobs.Extensions.DurableTask: storage unavailable"))

    with pytest.raises(TransientError, match="could not start the orchestration"):
        in_trigger(extension, clock, lambda c: c.start(plan(0)))


# --- partition events ----------------------------------------------------------------------------------------------
def test_a_finished_partition_raises_its_own_event_with_the_outcome(
    extension: FakeDurableExtension, clock: SteppedClock
) -> None:
    instance = started(extension, clock, 0, 3)

    in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 3, False))
    in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 0, True))

    assert instance.events == [("partition_done_3", {"ok": False}), ("partition_done_0", {"ok": True})]
    assert extension.requests[-1] == ("POST", f"instances/{RUN_ID}/raiseEvent/partition_done_0")


def test_the_events_raised_are_the_ones_the_orchestrator_waits_for(
    extension: FakeDurableExtension, clock: SteppedClock
) -> None:
    instance = started(extension, clock, 0, 1, 2)
    for partition in (2, 0, 1):
        in_trigger(extension, clock, lambda c, p=partition: c.partition_finished(RUN_ID, p, True))

    # Replay what the extension would hold: this instance's input, then the events the coordinator raised.
    history = DurableHistory(name=instance.name, instance_id=RUN_ID, input_=instance.input, start=NOW)
    history.begin_episode().execution_started()
    for name, payload in instance.events:
        history.event_raised(name, payload)
    state = json.loads(df.Orchestrator.create(run_orchestrator)(history.request_body()))
    scheduled = [a["functionName"] for a in flat_actions(state) if a["actionType"] == ActionType.CALL_ACTIVITY]
    assert scheduled == [SETTLE_ACTIVITY]


@pytest.mark.parametrize("status", FINISHED)
def test_an_event_for_a_finished_orchestration_is_logged_and_dropped(
    extension: FakeDurableExtension, clock: SteppedClock, caplog: pytest.LogCaptureFixture, status: str
) -> None:
    started(extension, clock, 0, 1).status = status

    with caplog.at_level(logging.WARNING, logger="opus.azure.durable_coordinator"):
        in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 1, True))

    (record,) = caplog.records
    assert record.getMessage() == "partition event dropped: no running orchestration"
    assert {k: record.__dict__[k] for k in ("run_id", "partition", "orchestration")} == {
        "run_id": RUN_ID, "partition": 1, "orchestration": "gone"
    }


def test_an_event_for_an_unknown_orchestration_is_logged_and_dropped(
    extension: FakeDurableExtension, clock: SteppedClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="opus.azure.durable_coordinator"):
        in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 4, False))

    assert extension.requests == [("POST", f"instances/{RUN_ID}/raiseEvent/partition_done_4")]
    (record,) = caplog.records
    assert record.getMessage() == "partition event dropped: no running orchestration"
    assert {k: record.__dict__[k] for k in ("run_id", "partition", "orchestration")} == {
        "run_id": RUN_ID, "partition": 4, "orchestration": "not found"
    }


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"Message": "An error has occurred."}),
        (400, None),
        (503, None),
        aiohttp.ClientConnectionError("Cannot connect to host 127.0.0.1:17071"),
        TimeoutError(),
    ],
    ids=["500", "400", "503", "connection-lost", "request-timeout"],
)
def test_any_other_failure_to_raise_an_event_is_transient(
    extension: FakeDurableExtension, clock: SteppedClock, answer: tuple[int, Any] | BaseException
) -> None:
    started(extension, clock, 0)
    extension.fail_next(answer)

    with pytest.raises(TransientError, match="could not announce partition 0"):
        in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 0, True))


def test_only_the_sdks_own_404_is_taken_for_a_missing_orchestration(
    extension: FakeDurableExtension, clock: SteppedClock
) -> None:
    # The SDK reports 404 as a bare Exception with this text; the same text on another error is not a 404.
    started(extension, clock, 0)
    extension.fail_next(RuntimeError(f"No instance with ID {RUN_ID} found."))

    with pytest.raises(TransientError):
        in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 0, True))


def test_many_threads_announce_partitions_through_one_bridge_at_once(
    extension: FakeDurableExtension, clock: SteppedClock, concurrently: Callable[[Callable[[], None], int], list[None]]
) -> None:
    instance = started(extension, clock, *range(8))
    partitions = iter(range(8))
    lock = threading.Lock()

    def announce_next(coordinator: DurableRunCoordinator) -> None:
        with lock:
            partition = next(partitions)
        coordinator.partition_finished(RUN_ID, partition, True)

    in_trigger(extension, clock, lambda c: concurrently(lambda: announce_next(c), 8))

    assert sorted(name for name, _ in instance.events) == sorted(f"partition_done_{p}" for p in range(8))


# --- status --------------------------------------------------------------------------------------------------------
def test_orchestration_status_reports_the_runtime_status(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    instance = started(extension, clock, 0)

    assert in_trigger(extension, clock, lambda c: c.orchestration_status(RUN_ID)) is OrchestrationStatus.RUNNING
    instance.status = "Completed"
    assert in_trigger(extension, clock, lambda c: c.orchestration_status(RUN_ID)) is OrchestrationStatus.COMPLETED
    assert extension.requests[-1][1].startswith(f"instances/{RUN_ID}")


def test_orchestration_status_of_an_unknown_run_is_none(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    assert in_trigger(extension, clock, lambda c: c.orchestration_status(RUN_ID)) is None


def test_orchestration_status_failure_is_transient(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    extension.fail_next((502, None))

    with pytest.raises(TransientError, match="could not read the orchestration status"):
        in_trigger(extension, clock, lambda c: c.orchestration_status(RUN_ID))


# --- the bridge ----------------------------------------------------------------------------------------------------
def test_a_call_that_outlives_its_timeout_is_cancelled_and_transient(
    extension: FakeDurableExtension, clock: SteppedClock
) -> None:
    started(extension, clock, 0)
    extension.stalled = True

    with pytest.raises(TransientError, match="timed out"):
        in_trigger(extension, clock, lambda c: c.partition_finished(RUN_ID, 0, True), timeout_s=0.05)


def test_the_bridge_refuses_to_block_its_own_loop(extension: FakeDurableExtension) -> None:
    async def on_the_loop() -> None:
        client = extension.client()
        bridge = DurableClientBridge.on_running_loop(client)
        bridge.run(client.get_status(RUN_ID))

    with pytest.raises(BridgeMisuseError, match="own event loop"):
        asyncio.run(on_the_loop())
    assert extension.requests == []


def test_the_bridge_refuses_a_loop_whose_invocation_ended(extension: FakeDurableExtension) -> None:
    client = extension.client()

    async def invocation() -> DurableClientBridge:
        return DurableClientBridge.on_running_loop(client)

    bridge = asyncio.run(invocation())
    with pytest.raises(BridgeMisuseError, match="not running"):
        bridge.run(client.get_status(RUN_ID))
    assert extension.requests == []


def test_a_misused_bridge_is_not_disguised_as_transient(extension: FakeDurableExtension, clock: SteppedClock) -> None:
    async def on_the_loop() -> None:
        bridge = DurableClientBridge.on_running_loop(extension.client())
        DurableRunCoordinator(bridge, clock=clock, deadline_minutes=1).partition_finished(RUN_ID, 0, True)

    with pytest.raises(BridgeMisuseError):
        asyncio.run(on_the_loop())


@pytest.mark.parametrize("minutes", [0, MAX_DEADLINE_MINUTES + 1])
def test_the_deadline_stays_within_one_cancellable_timer(
    extension: FakeDurableExtension, clock: SteppedClock, minutes: int
) -> None:
    async def invocation() -> None:
        bridge = DurableClientBridge.on_running_loop(extension.client())
        with pytest.raises(ValueError, match="deadline_minutes must be within"):
            DurableRunCoordinator(bridge, clock=clock, deadline_minutes=minutes)

    asyncio.run(invocation())
