"""The RunCoordinator on Azure: a Durable orchestration per run, told of each partition by an external event.

The pipeline is synchronous and runs in a worker thread (`asyncio.to_thread`) inside an `async def` trigger, while
the Durable client is async and belongs to the trigger's event loop. `DurableClientBridge` carries each client call
back onto that loop and waits for it, so the pipeline keeps one synchronous port on both runtimes.

Create both per invocation, inside the trigger: the client comes with the invocation's binding.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from opus.azure.orchestration import MAX_DEADLINE_MINUTES, ORCHESTRATOR_NAME, OrchestrationInput, partition_event
from opus.domain.models import RunPlan
from opus.errors import TransientError
from opus.ports import Clock

logger = logging.getLogger(__name__)
T = TypeVar("T")


class OrchestrationStatus(StrEnum):
    """An orchestration's runtime status, spelled as the Durable extension reports it."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TERMINATED = "Terminated"


class DurableClient(Protocol):
    """The part of `azure.durable_functions.DurableOrchestrationClient` the coordinator uses."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str: ...

    async def raise_event(self, instance_id: str, event_name: str, event_data: Any = None) -> None: ...

    async def get_status(self, instance_id: str) -> Any: ...


class BridgeMisuseError(RuntimeError):
    """The bridge was called where it cannot work: on its own loop, or after its invocation ended. A bug of ours."""


class DurableClientBridge:
    """Runs coroutines of a Durable client on the event loop that owns it, from another thread."""

    def __init__(self, client: DurableClient, loop: asyncio.AbstractEventLoop, *, timeout_s: float = 60.0) -> None:
        self.client = client
        self._loop = loop
        self._timeout_s = timeout_s

    @classmethod
    def on_running_loop(cls, client: DurableClient, *, timeout_s: float = 60.0) -> DurableClientBridge:
        """The bridge for the calling trigger: call it in the `async def`, before handing work to a thread."""
        return cls(client, asyncio.get_running_loop(), timeout_s=timeout_s)

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run `call` on the client's loop and return its result; raises what it raises.

        A call that takes longer than the timeout is cancelled and becomes a TransientError.
        """
        if _running_loop() is self._loop:
            call.close()
            # Blocking the loop to wait for work scheduled on that same loop would never return.
            raise BridgeMisuseError("called on the Durable client's own event loop; call it from a worker thread")
        if not self._loop.is_running():
            call.close()
            raise BridgeMisuseError("the Durable client's event loop is not running (its invocation has ended)")
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        # Wait, then read: a call that itself ends in TimeoutError must not pass for the bridge's own timeout.
        done, _ = concurrent.futures.wait([future], timeout=self._timeout_s)
        if not done:
            future.cancel()
            raise TransientError(f"Durable client call timed out after {self._timeout_s:g} s")
        return future.result()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# What DurableOrchestrationClient.raise_event raises (a bare Exception) for these extension answers, 1.7.0.
def _instance_not_found(instance_id: str) -> str:
    return f"No instance with ID {instance_id} found."


def _instance_gone(instance_id: str) -> str:
    return f"Instance with ID {instance_id} is gone: either completed or failed"


def _undeliverable_reason(exc: Exception, instance_id: str) -> str | None:
    """'not found' (404) or 'gone' (410) when the SDK reports one of them, else None."""
    if type(exc) is not Exception:
        return None
    message = str(exc)
    if message == _instance_not_found(instance_id):
        return "not found"
    if message == _instance_gone(instance_id):
        return "gone"
    return None


# Errors a client call may end with that are already classified: they leave the coordinator as they are.
_PASS_THROUGH = (TransientError, BridgeMisuseError)


class DurableRunCoordinator:
    """Starts one orchestration per run (instance id = run id) and raises one event per finished partition."""

    def __init__(self, bridge: DurableClientBridge, *, clock: Clock, deadline_minutes: int) -> None:
        if not 1 <= deadline_minutes <= MAX_DEADLINE_MINUTES:
            raise ValueError(f"deadline_minutes must be within 1..{MAX_DEADLINE_MINUTES}, got {deadline_minutes}")
        self._bridge = bridge
        self._clock = clock
        self._deadline = timedelta(minutes=deadline_minutes)

    def start(self, plan: RunPlan) -> None:
        """Start the run's orchestration; a plan holding only the resumed partitions restarts a retried run.

        Starting an instance id that exists replaces that instance, so a retry reuses the run id. That includes a
        running one (host.json sets `overridableExistingInstanceStates` to AnyState; the extension's default
        refuses it): a failed run's orchestration still waits, until its deadline, for the partitions whose
        messages the failure dropped.
        """
        spec = OrchestrationInput.for_plan(plan, self._clock.now() + self._deadline)
        client = self._bridge.client
        try:
            self._bridge.run(
                client.start_new(ORCHESTRATOR_NAME, instance_id=plan.run_id, client_input=spec.to_json())
            )
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise TransientError(f"could not start the orchestration of run {plan.run_id}: {exc}") from exc
        logger.info(
            "orchestration started",
            extra={"run_id": plan.run_id, "partitions": len(spec.partitions), "deadline": spec.deadline.isoformat()},
        )

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None:
        """Announce a finished partition. An orchestration that is missing or already over drops the event.

        Dropping is right: a finished orchestration has already settled or failed the run, and raising would only
        send the work item round until it is dead-lettered.
        """
        client = self._bridge.client
        try:
            self._bridge.run(client.raise_event(run_id, partition_event(partition), {"ok": ok}))
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            reason = _undeliverable_reason(exc, run_id)
            if reason is None:
                raise TransientError(f"could not announce partition {partition} of run {run_id}: {exc}") from exc
            logger.warning(
                "partition event dropped: no running orchestration",
                extra={"run_id": run_id, "partition": partition, "ok": ok, "orchestration": reason},
            )

    def orchestration_status(self, run_id: str) -> OrchestrationStatus | None:
        """The run's orchestration status, or None when there is no orchestration of that id."""
        client = self._bridge.client
        try:
            status = self._bridge.run(client.get_status(run_id))
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise TransientError(f"could not read the orchestration status of run {run_id}: {exc}") from exc
        runtime_status = getattr(status, "runtime_status", None)
        # An unknown instance comes back as a status object without a runtime status.
        return None if runtime_status is None else OrchestrationStatus(runtime_status.value)
