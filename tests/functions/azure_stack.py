"""The Functions app of `function_app.py`, invoked as the host would, over real services and doubles at the edges.

The runtime is built from explicit parts (`AzureRuntime(...)`, installed with `install_runtime`): the test
database, the sandbox over HTTP, `ServiceBusWorkQueue` over the recording Service Bus double, `BlobWatermarkStore`
on Azurite, and a SteppableClock that the double's scheduled delivery, the pipeline and the sandbox all read.
The functions are the registered ones (`app.get_functions()`), called with the objects the worker builds:
`azure.functions.servicebus.ServiceBusMessage`, `azure.functions.timer.TimerRequest`, `func.HttpRequest`, and a
real Durable client talking to `DurableHost`.

`Conveyor` is the Service Bus of an Azure-shaped run: it delivers what the double holds to the trigger functions
(honouring scheduled times by stepping the clock when nothing is due), redelivers a message whose invocation
raised, with its delivery count raised, as the standard binding does, and lets the orchestrations play the
events the workers raised.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest
from durable_host import DurableHost

import function_app
from opus.adapters.blob_watermark import BlobWatermarkStore
from opus.azure.runtime import AzureRuntime
from opus.config import Settings
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE
from opus.testing.fakes import SteppableClock
from opus.testing.servicebus_double import DeliveredMessage, RecordingServiceBusClient

# The indexer's list, taken once: a second `get_functions()` on the same app refuses its names as duplicates.
REGISTERED = function_app.app.get_functions()
FUNCTIONS = {f.get_function_name(): f for f in REGISTERED}
# Service Bus's default maxDeliveryCount: after that many failed deliveries a message is dead-lettered.
MAX_DELIVERIES = 10


def stepped_now() -> SteppableClock:
    """A clock at the current second, so that the sandbox's stones (created up to now) fall inside a run's window."""
    return SteppableClock(datetime.now(UTC).replace(microsecond=0))


def user_function(name: str) -> Any:
    """The function the worker calls; for a Durable client function, the coroutine that takes the client."""
    registered = FUNCTIONS[name].get_user_function()
    return getattr(registered, "client_function", registered)


@dataclass
class AzureStack:
    runtime: AzureRuntime
    clock: SteppableClock
    servicebus: RecordingServiceBusClient
    durable: DurableHost
    watermarks: BlobWatermarkStore

    # --- triggers ---------------------------------------------------------------------------------------------
    def nightly(self) -> None:
        asyncio.run(user_function("nightly")(TimerRequest(past_due=False), self.durable.client()))

    def housekeeping(self) -> None:
        user_function("housekeeping")(TimerRequest(past_due=False))

    def http(self, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: object = None) -> func.HttpResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        request = func.HttpRequest(
            method, f"https://opus.example.net{path}", headers={"content-type": "application/json", **(headers or {})},
            body=raw,
        )
        response: func.HttpResponse = asyncio.run(user_function("http_api")(request, None, self.durable.client()))
        return response

    def invoke(self, message: DeliveredMessage, delivery_count: int = 1) -> None:
        """Hand one message to its queue's function; raises what the function raises (the message is abandoned)."""
        received = ServiceBusMessage(
            body=json.dumps(message.body).encode(), message_id=message.message_id, delivery_count=delivery_count,
            content_type=message.content_type, enqueued_time_utc=message.enqueued_at, application_properties={},
            user_properties={},
        )
        if message.queue == WORK_QUEUE:
            asyncio.run(user_function("work_items")(received, self.durable.client()))
        elif message.queue == CONSOLIDATE_QUEUE:
            user_function("consolidate")(received)
        else:
            raise AssertionError(f"no function listens on {message.queue}")

    def due(self, queue: str) -> list[DeliveredMessage]:
        return self.servicebus.deliver(queue)


StackFactory = Callable[[Settings, SteppableClock], AzureStack]
Hook = Callable[[DeliveredMessage, int], None]


@dataclass
class Conveyor:
    stack: AzureStack
    before_invocation: Hook | None = None  # called before each invocation, e.g. to plan a fault
    # Asked after each successful invocation: deliver this message once more (its lock was lost meanwhile)?
    duplicate: Callable[[DeliveredMessage], bool] = lambda _message: False
    duplicated: list[str] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (message id, delivery count, error)
    dead_lettered: list[DeliveredMessage] = field(default_factory=list)
    _redeliver: list[tuple[DeliveredMessage, int]] = field(default_factory=list)

    def run_until(
        self, done: Callable[[], bool], *, queues: tuple[str, ...] = (WORK_QUEUE, CONSOLIDATE_QUEUE),
        step_s: float = 1.0, max_steps: int = 3_000,
    ) -> None:
        """Deliver (from `queues`), play orchestrations, and step the clock when idle, until `done()` holds while
        idle."""
        for _ in range(max_steps):
            self.stack.durable.pump()
            batch = self._redeliver + [
                (m, 1) for queue in queues for m in self.stack.due(queue)
            ]
            self._redeliver = []
            if not batch:
                if done():
                    return
                self.stack.clock.advance(step_s)
                continue
            for message, count in batch:
                self._deliver(message, count)
        raise AssertionError(f"not done after {max_steps} steps; failures: {self.failures[-5:]}")

    def _deliver(self, message: DeliveredMessage, count: int) -> None:
        if self.before_invocation is not None:
            self.before_invocation(message, count)
        self.invocations[message.message_id] += 1
        try:
            self.stack.invoke(message, count)
        except Exception as exc:
            self.failures.append((message.message_id, count, f"{type(exc).__name__}: {exc}"))
            if count >= MAX_DELIVERIES:
                self.dead_lettered.append(message)
            else:
                self._redeliver.append((message, count + 1))
            return
        if message.message_id not in self.duplicated and self.duplicate(message):
            # The lock was lost while the function ran: Service Bus hands the completed message out again.
            self.duplicated.append(message.message_id)
            self._redeliver.append((message, count + 1))
