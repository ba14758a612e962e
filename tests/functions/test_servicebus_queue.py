"""ServiceBusWorkQueue at the SDK boundary: what it hands the SDK's sender, and how SDK errors come out."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from itertools import pairwise

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import DefaultAzureCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityDisabledError,
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
)

from opus.adapters.servicebus_queue import CONTENT_TYPE, ServiceBusWorkQueue
from opus.config import load_settings
from opus.errors import ConfigError, PermanentError, TransientError
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE, OutgoingMessage, WorkQueue
from opus.testing.fakes import SteppableClock
from opus.testing.servicebus_double import RecordingBatch, RecordingServiceBusClient

Q = WORK_QUEUE
SMALL_BATCH = 4096  # bytes: a batch of a few dozen of the messages below
FAKE_CONNECTION = "Endpoint=sb://opus-test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=bm90LWEta2V5"


@pytest.fixture
def clock() -> SteppableClock:
    return SteppableClock()


@pytest.fixture
def client(clock: SteppableClock) -> RecordingServiceBusClient:
    return RecordingServiceBusClient(clock=clock, max_size_in_bytes=SMALL_BATCH)


@pytest.fixture
def queue(client: RecordingServiceBusClient, clock: SteppableClock) -> ServiceBusWorkQueue:
    return ServiceBusWorkQueue(client, clock=clock)


def _page(i: int, padding: int = 40) -> dict[str, object]:
    return {"run_id": "r1", "partition": 0, "offset": i * 50, "pad": "x" * padding}


def test_it_is_a_work_queue(queue: ServiceBusWorkQueue) -> None:
    producer: WorkQueue = queue
    producer.send(Q, {"a": 1})


def test_a_message_carries_its_json_body_id_and_content_type(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    queue.send(Q, {"run_id": "r1", "partition": 2, "offset": 100}, message_id="r1:2:100")
    [message] = client.sent(Q)
    assert message.message_id == "r1:2:100"
    assert message.content_type == CONTENT_TYPE == "application/json"
    assert json.loads(b"".join(message.body)) == {"run_id": "r1", "partition": 2, "offset": 100}
    assert message.scheduled_enqueue_time_utc is None


def test_a_message_without_an_id_gets_a_fresh_one(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    queue.send(Q, {"a": 1})
    queue.send(Q, {"a": 1})
    queue.send_batch(Q, [OutgoingMessage({"a": 1}), OutgoingMessage({"a": 1})])
    ids = [m.message_id for m in client.sent(Q)]
    assert len(set(ids)) == 4
    assert all(len(str(i)) == 36 for i in ids), ids


def test_a_delay_becomes_a_scheduled_time_from_the_clock(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient, clock: SteppableClock
) -> None:
    clock.advance(3600)
    queue.send(Q, {"a": 1}, message_id="later", delay_s=90)
    queue.send_batch(Q, [OutgoingMessage({"b": 2}, "soon", 1.5), OutgoingMessage({"c": 3}, "now", 0)])
    scheduled = {m.message_id: m.scheduled_enqueue_time_utc for m in client.sent(Q)}
    assert scheduled == {
        "later": clock.now() + timedelta(seconds=90),
        "soon": clock.now() + timedelta(seconds=1.5),
        "now": None,
    }


def test_a_batch_is_split_into_as_few_sdk_batches_as_the_size_limit_allows(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    messages = [OutgoingMessage(_page(i), f"r1:0:{i * 50}") for i in range(200)]
    queue.send_batch(Q, messages)
    calls = client.calls(Q)
    assert [m.message_id for call in calls for m in call] == [m.message_id for m in messages], "all, in order"
    assert len(calls) > 2
    # As few as possible: every batch was filled until the next message would not have fitted.
    for call, following in pairwise(calls):
        assert _size(call) <= SMALL_BATCH < _size([*call, following[0]])
    assert _size(calls[-1]) <= SMALL_BATCH


def test_a_batch_that_fits_is_one_send(queue: ServiceBusWorkQueue, client: RecordingServiceBusClient) -> None:
    queue.send_batch(Q, [OutgoingMessage(_page(i), f"r1:0:{i}") for i in range(3)])
    assert [len(call) for call in client.calls(Q)] == [3]


def test_an_empty_batch_sends_nothing(queue: ServiceBusWorkQueue, client: RecordingServiceBusClient) -> None:
    queue.send_batch(Q, [])
    assert client.calls(Q) == []
    assert client.senders == []


def test_a_message_too_big_for_an_empty_batch_is_a_clear_permanent_error_and_nothing_is_sent(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    huge = OutgoingMessage(_page(1, padding=SMALL_BATCH), "huge")
    with pytest.raises(PermanentError, match=r"'huge' is larger than a whole batch \(4096 bytes\)"):
        queue.send_batch(Q, [OutgoingMessage(_page(0), "small"), huge])
    with pytest.raises(PermanentError, match="huge"):
        queue.send_batch(Q, [huge])
    with pytest.raises(PermanentError, match="MessageSizeExceededError"):
        queue.send(Q, huge.body, message_id="huge")
    assert client.sent(Q) == []


def test_one_sender_per_queue_created_lazily_and_reused_across_threads(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    assert client.senders == []
    barrier = threading.Barrier(8)

    def send(t: int) -> None:
        barrier.wait()
        for i in range(10):
            queue.send(Q if i % 2 else CONSOLIDATE_QUEUE, {"t": t, "i": i}, message_id=f"{t}:{i}")

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s.queue for s in client.senders) == [CONSOLIDATE_QUEUE, Q]
    assert len(client.sent(Q)) == len(client.sent(CONSOLIDATE_QUEUE)) == 40


def test_close_closes_senders_and_client(queue: ServiceBusWorkQueue, client: RecordingServiceBusClient) -> None:
    queue.send(Q, {"a": 1})
    queue.close()
    assert all(s.closed for s in client.senders)
    assert client.closed
    with pytest.raises(RuntimeError, match="after close"):
        queue.send(Q, {"a": 1})


def test_a_body_must_be_a_json_object(queue: ServiceBusWorkQueue) -> None:
    with pytest.raises(TypeError, match="JSON object"):
        queue.send(Q, ["not", "an", "object"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ServiceBusConnectionError(message="connection lost"),
        ServiceBusCommunicationError(message="socket closed"),
        OperationTimeoutError(message="timed out"),
        ServiceBusServerBusyError(message="busy"),
        ServiceBusQuotaExceededError(message="queue full"),
        ServiceBusError(message="unknown condition"),
        ServiceRequestError("no route to host"),
    ],
    ids=type,
)
def test_transient_sdk_errors_become_transient_errors(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient, error: Exception
) -> None:
    client.fail_next(error)
    with pytest.raises(TransientError, match=type(error).__name__) as caught:
        queue.send(Q, {"a": 1}, message_id="m")
    assert not isinstance(caught.value, PermanentError)
    assert caught.value.__cause__ is error
    queue.send(Q, {"a": 1}, message_id="m")
    assert [m.message_id for m in client.sent(Q)] == ["m"], "the retry goes out on the same sender"


@pytest.mark.parametrize(
    "error",
    [
        ServiceBusAuthenticationError(message="bad key"),
        ServiceBusAuthorizationError(message="no Send claim"),
        ClientAuthenticationError("no identity"),
        MessagingEntityNotFoundError(message="no such queue"),
        MessagingEntityDisabledError(message="queue disabled"),
        MessageSizeExceededError(message="too large"),
    ],
    ids=type,
)
def test_permanent_sdk_errors_become_permanent_errors(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient, error: Exception
) -> None:
    client.fail_next(error)
    with pytest.raises(PermanentError, match=type(error).__name__):
        queue.send_batch(Q, [OutgoingMessage({"a": 1}, "m")])


def test_opening_the_link_can_fail_too(queue: ServiceBusWorkQueue, client: RecordingServiceBusClient) -> None:
    client.fail_batch_creation(ServiceBusConnectionError(message="unreachable"))
    with pytest.raises(TransientError, match="ServiceBusConnectionError"):
        queue.send_batch(Q, [OutgoingMessage({"a": 1}, "m")])
    assert client.sent(Q) == []


def test_a_failure_part_way_through_a_batch_leaves_the_earlier_sdk_batches_sent(
    queue: ServiceBusWorkQueue, client: RecordingServiceBusClient
) -> None:
    messages = [OutgoingMessage(_page(i), f"r1:0:{i}") for i in range(100)]
    client.fail_next(None, ServiceBusServerBusyError(message="busy"))
    with pytest.raises(TransientError, match="ServiceBusServerBusyError"):
        queue.send_batch(Q, messages)
    [first] = client.calls(Q)
    queue.send_batch(Q, messages)  # the retry sends everything again; the broker drops what it already has
    delivered = client.deliver(Q)
    assert [m.message_id for m in delivered] == [m.message_id for m in messages]
    assert client.broker.discarded_duplicates == len(first)


def test_from_settings_with_a_connection_string() -> None:
    settings = load_settings(ServiceBusConnection=FAKE_CONNECTION)
    queue = ServiceBusWorkQueue.from_settings(settings, clock=SteppableClock())
    client = queue._client
    assert isinstance(client, ServiceBusClient)
    assert client.fully_qualified_namespace == "opus-test.servicebus.windows.net"
    queue.close()


def test_from_settings_with_an_identity() -> None:
    settings = load_settings(ServiceBusConnection__fullyQualifiedNamespace="opus-test.servicebus.windows.net")
    credential = DefaultAzureCredential()
    queue = ServiceBusWorkQueue.from_settings(settings, clock=SteppableClock(), credential=credential)
    client = queue._client
    assert isinstance(client, ServiceBusClient)
    assert client.fully_qualified_namespace == "opus-test.servicebus.windows.net"
    queue.close()


def test_from_settings_without_service_bus_names_the_settings() -> None:
    with pytest.raises(ConfigError, match="ServiceBusConnection"):
        ServiceBusWorkQueue.from_settings(load_settings(), clock=SteppableClock())


def _size(messages: list[ServiceBusMessage]) -> int:
    """What these messages take in one SDK batch, by the SDK's own accounting."""
    batch = RecordingBatch(1024 * 1024)
    for m in messages:
        batch.add_message(m)
    return batch.size_in_bytes
