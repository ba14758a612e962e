"""The Azure WorkQueue: Azure Service Bus queues, through the synchronous SDK.

- Duplicate detection is the queue's (`requiresDuplicateDetection` in the infrastructure): the message id we give
  (`run:partition:offset` for a page) is its key; a message without one gets a fresh uuid, so it is never dropped.
- `delay_s` becomes a scheduled enqueue time, taken from the injected clock so that tests can step it.
- The SDK does not promise that a client or sender is thread-safe ("use a threading.Lock"), so there is one sender
  per queue, opened on first use, and each is used by one thread at a time under its own lock.
- Every SDK error is translated here into TransientError (worth retrying) or PermanentError (not).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
)

from opus.errors import ConfigError, PermanentError, TransientError
from opus.ports import JSON, Clock, OutgoingMessage

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from opus.config import Settings

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"

# What retrying cannot fix. The SDK marks authentication and authorization failures retryable, but a wrong key
# or a missing role does not fix itself between our retries; a disabled queue waits for an operator.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    ServiceBusAuthenticationError, ServiceBusAuthorizationError, ClientAuthenticationError,
    MessagingEntityNotFoundError, MessagingEntityDisabledError, MessageSizeExceededError,
)


class MessageSender(Protocol):
    """The part of `azure.servicebus.ServiceBusSender` this adapter uses."""

    def send_messages(self, message: ServiceBusMessage | ServiceBusMessageBatch) -> None: ...

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch: ...

    def close(self) -> None: ...


class SenderFactory(Protocol):
    """The part of `azure.servicebus.ServiceBusClient` this adapter uses."""

    def get_queue_sender(self, queue_name: str) -> MessageSender: ...

    def close(self) -> None: ...


class _SenderSlot:
    """One queue's sender and the lock that keeps it to one thread at a time."""

    def __init__(self, sender: MessageSender) -> None:
        self.sender = sender
        self.lock = threading.Lock()


class ServiceBusWorkQueue:
    """Implements `opus.ports.WorkQueue`; safe to share between threads."""

    def __init__(self, client: SenderFactory, *, clock: Clock, max_batch_size_bytes: int | None = None) -> None:
        """`max_batch_size_bytes`: None lets the broker's link decide (256 KB Standard, up to 1 MB Premium)."""
        self._client = client
        self._clock = clock
        self._max_batch_size_bytes = max_batch_size_bytes
        self._slots: dict[str, _SenderSlot] = {}
        self._slots_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock, credential: TokenCredential | None = None,
    ) -> ServiceBusWorkQueue:
        """A connection string when one is set, else the namespace with an Azure identity."""
        if settings.servicebus_connection is not None:
            client = ServiceBusClient.from_connection_string(settings.servicebus_connection.get_secret_value())
        elif settings.servicebus_namespace:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = ServiceBusClient(settings.servicebus_namespace, credential)
        else:
            raise ConfigError(
                "Service Bus is not configured: set ServiceBusConnection or "
                "ServiceBusConnection__fullyQualifiedNamespace"
            )
        return cls(client, clock=clock)

    def send(self, queue: str, body: JSON, *, message_id: str | None = None, delay_s: float = 0.0) -> None:
        message = self._message(OutgoingMessage(body, message_id, delay_s))
        with self._sender(queue) as sender, _translated(queue, "send"):
            sender.send_messages(message)

    def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send in as few SDK batches as the size limit allows, in order.

        Every batch is filled before the first goes out, so a message too large for any batch fails the call
        with nothing sent. Not atomic across batches: a failure part-way leaves the earlier batches sent, and
        retrying the whole call is safe because the broker drops the ids it already has.
        """
        if not messages:
            return
        outgoing = [self._message(m) for m in messages]
        with self._sender(queue) as sender, _translated(queue, "send_batch"):
            batches = self._batches(sender, outgoing)
            for batch in batches:
                sender.send_messages(batch)
        logger.debug("messages sent", extra={"queue": queue, "count": len(outgoing), "batches": len(batches)})

    def close(self) -> None:
        """Close every sender, then the client. Sending after this is an error."""
        with self._slots_lock:
            self._closed = True
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            with slot.lock:
                slot.sender.close()
        self._client.close()

    def __enter__(self) -> ServiceBusWorkQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _message(self, m: OutgoingMessage) -> ServiceBusMessage:
        if not isinstance(m.body, dict):
            raise TypeError(f"a message body must be a JSON object, not {type(m.body).__name__}")
        scheduled = self._clock.now() + timedelta(seconds=m.delay_s) if m.delay_s > 0 else None
        return ServiceBusMessage(
            json.dumps(m.body, separators=(",", ":")),
            content_type=CONTENT_TYPE,
            message_id=m.message_id or str(uuid.uuid4()),
            scheduled_enqueue_time_utc=scheduled,
        )

    def _batches(self, sender: MessageSender, messages: list[ServiceBusMessage]) -> list[ServiceBusMessageBatch]:
        """Fill each batch until the next message does not fit; one that fits no empty batch is refused."""
        batches = [sender.create_message_batch(self._max_batch_size_bytes)]
        for message in messages:
            if _added(batches[-1], message):
                continue
            if len(batches[-1]):
                batches.append(sender.create_message_batch(self._max_batch_size_bytes))
                if _added(batches[-1], message):
                    continue
            raise PermanentError(
                f"message {message.message_id!r} is larger than a whole batch "
                f"({batches[-1].max_size_in_bytes} bytes)"
            )
        return batches

    @contextmanager
    def _sender(self, queue: str) -> Iterator[MessageSender]:
        with self._slots_lock:
            if self._closed:
                raise RuntimeError("ServiceBusWorkQueue used after close()")
            slot = self._slots.get(queue)
            if slot is None:
                # Opening a sender only builds a handler; the SDK connects on the first send.
                with _translated(queue, "open sender"):
                    slot = _SenderSlot(self._client.get_queue_sender(queue_name=queue))
                self._slots[queue] = slot
        with slot.lock:
            yield slot.sender


def _added(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def classify(exc: AzureError, queue: str, action: str) -> TransientError | PermanentError:
    """Our error for an SDK error: permanent for credentials, missing entities and oversized messages."""
    text = f"Service Bus {action} on {queue!r} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, PERMANENT_ERRORS):
        return PermanentError(text)
    # The rest is retried: lost connections, timeouts, a busy server, a full queue (it drains as consumers work,
    # although the SDK calls quota errors not retryable), an unknown AMQP condition, a credential that cannot
    # reach its token endpoint. A page's attempts are counted in partition_progress, so retrying is bounded.
    return TransientError(text)


@contextmanager
def _translated(queue: str, action: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        error = classify(exc, queue, action)
        logger.warning(
            "service bus call failed",
            extra={"queue": queue, "action": action, "error": type(exc).__name__,
                   "transient": isinstance(error, TransientError)},
        )
        raise error from exc
