"""A double of the Service Bus SDK's client and sender, for tests of `ServiceBusWorkQueue` without a broker.

There is no Service Bus emulator outside Docker, so the adapter is tested at the SDK boundary. The double
records every `send_messages` call as the SDK received it (the real `ServiceBusMessage` objects, batches built
by the real `ServiceBusMessageBatch` with its real size accounting) and models the two broker behaviours the
pipeline relies on, as Service Bus documents them:

- duplicate detection: a message whose id the queue accepted within the detection window (10 minutes by
  default) is accepted by the send and then silently discarded;
- scheduled delivery: a message with `scheduled_enqueue_time_utc` is not delivered before that time.

`deliver(queue)` hands out, and forgets, what a consumer would receive now, so that what the adapter made the
broker deliver can be compared with another WorkQueue's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

from opus.ports import JSON, Clock

# The Standard tier's limit on one message and on one batch.
STANDARD_MAX_BYTES = 256 * 1024
DUPLICATE_DETECTION_WINDOW_S = 600.0


class RecordingBatch(ServiceBusMessageBatch):
    """The SDK's batch (same size rules), also keeping the messages it accepted where a test can read them."""

    def __init__(self, max_size_in_bytes: int) -> None:
        super().__init__(max_size_in_bytes=max_size_in_bytes)
        self.added: list[ServiceBusMessage] = []

    def add_message(self, message: Any) -> None:
        super().add_message(message)
        self.added.append(message)


@dataclass(frozen=True, slots=True)
class DeliveredMessage:
    queue: str
    message_id: str
    body: JSON
    content_type: str | None
    enqueued_at: datetime


@dataclass
class _Accepted:
    message: ServiceBusMessage
    visible_at: datetime


class _Broker:
    """One namespace's queues: duplicate detection and scheduled delivery, nothing else."""

    def __init__(self, clock: Clock, duplicate_window_s: float) -> None:
        self._clock = clock
        self._window = timedelta(seconds=duplicate_window_s)
        self._lock = threading.Lock()
        self._pending: dict[str, list[_Accepted]] = {}
        self._last_seen: dict[tuple[str, str], datetime] = {}
        self.discarded_duplicates = 0

    def accept(self, queue: str, messages: Iterable[ServiceBusMessage]) -> None:
        with self._lock:
            now = self._clock.now()
            for message in messages:
                key = (queue, str(message.message_id))
                seen = self._last_seen.get(key)
                if seen is not None and now - seen < self._window:
                    self.discarded_duplicates += 1
                    continue
                self._last_seen[key] = now
                visible_at = message.scheduled_enqueue_time_utc or now
                self._pending.setdefault(queue, []).append(_Accepted(message, visible_at))

    def deliver(self, queue: str) -> list[DeliveredMessage]:
        with self._lock:
            now = self._clock.now()
            pending = self._pending.get(queue, [])
            due = [a for a in pending if a.visible_at <= now]
            self._pending[queue] = [a for a in pending if a.visible_at > now]
        return [
            DeliveredMessage(queue, str(a.message.message_id), _body(a.message), a.message.content_type, a.visible_at)
            for a in sorted(due, key=lambda a: a.visible_at)
        ]


class RecordingSender:
    """Stands in for `azure.servicebus.ServiceBusSender` on one queue."""

    def __init__(self, queue: str, client: RecordingServiceBusClient) -> None:
        self.queue = queue
        self._client = client
        self.calls: list[list[ServiceBusMessage]] = []
        self.closed = False

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        self._client.raise_planned_failure(self._client.planned_batch_failures)
        link_max = self._client.max_size_in_bytes
        if max_size_in_bytes and max_size_in_bytes > link_max:
            # As the SDK: a batch may not be larger than the link allows.
            raise ValueError(f"max_size_in_bytes {max_size_in_bytes} is larger than the link's {link_max}")
        return RecordingBatch(max_size_in_bytes or link_max)

    def send_messages(self, message: ServiceBusMessage | ServiceBusMessageBatch) -> None:
        if self.closed:
            raise ValueError("the handler has already been shutdown")
        self._client.raise_planned_failure(self._client.planned_send_outcomes)
        if isinstance(message, RecordingBatch):
            sent = list(message.added)
        elif isinstance(message, ServiceBusMessage):
            # The broker refuses a single message over the limit, as the SDK reports it.
            RecordingBatch(self._client.max_size_in_bytes).add_message(message)
            sent = [message]
        else:
            raise TypeError(f"this double sends messages and its own batches, not {type(message).__name__}")
        with self._client.lock:
            self.calls.append(sent)
        self._client.broker.accept(self.queue, sent)

    def close(self) -> None:
        self.closed = True


class RecordingServiceBusClient:
    """Stands in for `azure.servicebus.ServiceBusClient`: hands out recording senders and remembers them all."""

    def __init__(
        self, *, clock: Clock, max_size_in_bytes: int = STANDARD_MAX_BYTES,
        duplicate_window_s: float = DUPLICATE_DETECTION_WINDOW_S,
    ) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.broker = _Broker(clock, duplicate_window_s)
        self.lock = threading.Lock()
        self.senders: list[RecordingSender] = []
        self.closed = False
        self.planned_send_outcomes: list[Exception | None] = []
        self.planned_batch_failures: list[Exception | None] = []

    def get_queue_sender(self, queue_name: str) -> RecordingSender:
        sender = RecordingSender(queue_name, self)
        with self.lock:
            self.senders.append(sender)
        return sender

    def close(self) -> None:
        self.closed = True

    def fail_next(self, *outcomes: Exception | None) -> None:
        """Plan the next `send_messages` calls, one each, in order: an error to raise, or None to succeed."""
        with self.lock:
            self.planned_send_outcomes.extend(outcomes)

    def fail_batch_creation(self, error: Exception) -> None:
        """The next `create_message_batch` (which opens the link in the SDK) raises `error`."""
        with self.lock:
            self.planned_batch_failures.append(error)

    def raise_planned_failure(self, planned: list[Exception | None]) -> None:
        with self.lock:
            error = planned.pop(0) if planned else None
        if error is not None:
            raise error

    def calls(self, queue: str) -> list[list[ServiceBusMessage]]:
        """Each `send_messages` call on `queue`, as the list of messages it carried."""
        with self.lock:
            return [call for s in self.senders if s.queue == queue for call in s.calls]

    def sent(self, queue: str) -> list[ServiceBusMessage]:
        """Every message handed to the SDK for `queue`, duplicates included, in order."""
        return [m for call in self.calls(queue) for m in call]

    def deliver(self, queue: str) -> list[DeliveredMessage]:
        return self.broker.deliver(queue)


def _body(message: ServiceBusMessage) -> JSON:
    raw = b"".join(message.body) if not isinstance(message.body, bytes | str) else message.body
    decoded: JSON = json.loads(raw)
    return decoded

