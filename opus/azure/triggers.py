"""What each function of `function_app.py` does, on the process's runtime: one call per trigger.

Service Bus messages are settled by how the function ends (the standard binding, `autoCompleteMessages`): returning
completes, raising abandons, and the queue dead-letters after its `maxDeliveryCount`. A handler's Outcome maps onto
that the way `opus/local/consumers.py` maps it onto the local queue:
- finished partitions are announced first, so a crash before the message completes repeats the announcement
  (the orchestrator tolerates repeats) instead of losing it;
- DONE: return; RETRY: send the scheduled copy through the WorkQueue, then return;
- GIVE_UP: log an error and raise, so the message ends in the dead-letter queue (settling it from code would
  need the beta SDK-type binding package).
Functions that take a Durable client are `async def`; the synchronous pipeline runs in `asyncio.to_thread`, and the
coordinator carries its client calls back onto the invocation's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opus.azure.control import invocation_coordinator
from opus.azure.durable_coordinator import DurableClient
from opus.azure.runtime import current_runtime
from opus.errors import PermanentError
from opus.pipeline.consolidator import handle_consolidate
from opus.pipeline.coordinator import settle_run
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.housekeeping import run_housekeeping
from opus.pipeline.outcomes import Disposition, Outcome
from opus.pipeline.runs import fail_run
from opus.pipeline.scheduler import start_scheduled_run
from opus.pipeline.worker import handle_work_item
from opus.ports import CONSOLIDATE_QUEUE, JSON, WORK_QUEUE, RunCoordinator

logger = logging.getLogger(__name__)
Handler = Callable[[PipelineDeps, JSON], Outcome]


class MessageGivenUp(PermanentError):
    """The message can never succeed; raised so that Service Bus dead-letters it after its deliveries."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the functions read from a Service Bus message: its JSON body and what identifies the delivery."""

    queue: str
    message_id: str
    delivery_count: int
    body: bytes

    @classmethod
    def of(cls, queue: str, message: Any) -> Delivery:
        """From `azure.functions.ServiceBusMessage` (the binding's object)."""
        return cls(queue, str(message.message_id), int(message.delivery_count or 1), message.get_body())

    def context(self) -> dict[str, object]:
        return {"queue": self.queue, "message_id": self.message_id, "delivery_count": self.delivery_count}

    def json_body(self) -> JSON:
        try:
            body = json.loads(self.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            logger.error("message body is not a JSON object", extra=self.context())
            raise MessageGivenUp(f"message {self.message_id} on {self.queue} is not a JSON object")
        return body


def apply_outcome(
    deps: PipelineDeps, delivery: Delivery, outcome: Outcome, coordinator: RunCoordinator | None,
) -> None:
    """Announce, then settle by returning (DONE, RETRY after sending its copy) or raising (GIVE_UP)."""
    if outcome.finished and coordinator is None:
        raise RuntimeError(f"{delivery.queue} handler announced partitions but its function has no coordinator")
    for finished in outcome.finished:
        assert coordinator is not None
        coordinator.partition_finished(finished.run_id, finished.partition, finished.ok)
    if outcome.disposition is Disposition.RETRY:
        assert outcome.retry is not None
        retry = outcome.retry
        deps.queue.send(delivery.queue, retry.body, message_id=retry.message_id, delay_s=retry.delay_s)
        logger.info("message retried later", extra={**delivery.context(), "retry_id": retry.message_id,
                                                     "delay_s": retry.delay_s, "reason": outcome.reason})
    elif outcome.disposition is Disposition.GIVE_UP:
        logger.error("message given up", extra={**delivery.context(), "reason": outcome.reason})
        raise MessageGivenUp(f"message {delivery.message_id} on {delivery.queue} given up: {outcome.reason}")


def process(deps: PipelineDeps, handler: Handler, delivery: Delivery, coordinator: RunCoordinator | None) -> None:
    """Run one message through its handler and apply the outcome; anything raised abandons the message."""
    try:
        outcome = handler(deps, delivery.json_body())
    except Exception as exc:
        logger.warning("message handler failed; Service Bus redelivers it",
                       extra={**delivery.context(), "error": f"{type(exc).__name__}: {exc}"})
        raise
    apply_outcome(deps, delivery, outcome, coordinator)


async def work_item(message: Any, client: DurableClient) -> None:
    """One page of a partition (`work-items`); a partition that ends is announced to its orchestration."""
    runtime = current_runtime()
    coordinator = runtime.coordinator_for(client)
    delivery = Delivery.of(WORK_QUEUE, message)
    await asyncio.to_thread(process, runtime.deps, handle_work_item, delivery, coordinator)


def consolidate(message: Any) -> None:
    """One slice of a consolidation chain (`consolidate`); no partition ever ends here."""
    runtime = current_runtime()
    process(runtime.deps, handle_consolidate, Delivery.of(CONSOLIDATE_QUEUE, message), None)


async def nightly(client: DurableClient) -> list[str]:
    """The nightly schedule: for every enabled feed, plan the run it is time for, start its orchestration, then
    enqueue its work; returns the runs started."""
    runtime = current_runtime()
    coordinator = runtime.coordinator_for(client)
    run_ids = await asyncio.to_thread(start_scheduled_run, runtime.deps, coordinator)
    logger.info("nightly trigger ran", extra={"run_ids": run_ids})
    return run_ids


def housekeeping() -> None:
    run_housekeeping(current_runtime().deps)


def settle_activity(payload: object) -> str:
    """The orchestrator's activity once every partition reported: the completion rule, from PostgreSQL."""
    run_id = _run_id(payload)
    settlement = settle_run(current_runtime().deps, run_id)
    logger.info("run settled", extra={"run_id": run_id, "settlement": settlement.value})
    return settlement.value


def fail_activity(payload: object) -> bool:
    """The orchestrator's activity when the deadline came first: fail the run (False if it had ended)."""
    body = _activity_input(payload)
    reason = body.get("reason")
    return fail_run(current_runtime().deps, _run_id(body), reason if isinstance(reason, str) else "failed")


async def http(request: Any, context: Any, client: DurableClient) -> Any:
    """The REST API: the request goes to the process's ASGI app, with this invocation's coordinator set."""
    runtime = current_runtime()
    with invocation_coordinator(runtime.coordinator_for(client)):
        return await runtime.asgi_middleware.handle_async(request, context)


def _activity_input(payload: object) -> dict[str, Any]:
    # The activity binding decodes the JSON input; a string is an input that was encoded once more.
    decoded = json.loads(payload) if isinstance(payload, str) else payload
    if not isinstance(decoded, dict):
        raise PermanentError(f"activity input must be a JSON object, got {payload!r}")
    return decoded


def _run_id(payload: object) -> str:
    run_id = _activity_input(payload).get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise PermanentError(f"activity input has no run_id: {payload!r}")
    return run_id
