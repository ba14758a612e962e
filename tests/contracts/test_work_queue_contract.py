"""The WorkQueue contract: what the pipeline relies on of a queue, for the fake, PostgreSQL and Service Bus.

Each implementation is observed the way its consumers see it: the fake's `take`, PostgresQueue's `receive`
(then complete), and for Service Bus what the SDK double's model of the broker would deliver. Time is stepped,
never waited for: the steppable clock for the fake and Service Bus, and for PostgreSQL, whose clock is the
server's, by moving the waiting messages' visibility earlier by the same amount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from opus.adapters.postgres_queue import PostgresQueue
from opus.adapters.servicebus_queue import ServiceBusWorkQueue
from opus.db.pool import Database
from opus.ports import CONSOLIDATE_QUEUE, JSON, WORK_QUEUE, OutgoingMessage, WorkQueue
from opus.testing.fakes import InMemoryWorkQueue, SteppableClock
from opus.testing.servicebus_double import RecordingServiceBusClient

Q = WORK_QUEUE


@dataclass
class QueueUnderTest:
    queue: WorkQueue
    deliver: Callable[[str], list[tuple[str, JSON]]]
    """Receive and settle everything a consumer of the queue would get now: (message id, body) pairs."""
    pass_time: Callable[[float], None]


def _stepper(clock: SteppableClock) -> Callable[[float], None]:
    def pass_time(seconds: float) -> None:
        clock.advance(seconds)

    return pass_time


def _in_memory() -> QueueUnderTest:
    clock = SteppableClock()
    fake = InMemoryWorkQueue(clock)
    return QueueUnderTest(fake, lambda q: [(m.message_id, m.body) for m in fake.take(q)], _stepper(clock))


def _postgres(db: Database) -> Iterator[QueueUnderTest]:
    queue = PostgresQueue(db)

    def deliver(name: str) -> list[tuple[str, JSON]]:
        got: list[tuple[str, JSON]] = []
        while batch := queue.receive(name, max_messages=100):
            for message in batch:
                queue.complete(message)
                got.append((message.message_id, message.body))
        return got

    def pass_time(seconds: float) -> None:
        with db.transaction() as conn:
            conn.execute(
                "UPDATE queue_messages SET visible_at = visible_at - make_interval(secs => %(s)s) "
                "WHERE state = 'ready'",
                {"s": seconds},
            )

    yield QueueUnderTest(queue, deliver, pass_time)
    queue.close()


def _service_bus() -> Iterator[QueueUnderTest]:
    clock = SteppableClock()
    # A small batch limit, so that batches of tens of messages take several SDK batches.
    client = RecordingServiceBusClient(clock=clock, max_size_in_bytes=4096)
    queue = ServiceBusWorkQueue(client, clock=clock)
    yield QueueUnderTest(queue, lambda q: [(m.message_id, m.body) for m in client.deliver(q)], _stepper(clock))
    queue.close()


@pytest.fixture(params=["in-memory", "postgres", "service-bus"])
def subject(request: pytest.FixtureRequest) -> Iterator[QueueUnderTest]:
    if request.param == "in-memory":
        yield _in_memory()
    elif request.param == "postgres":
        yield from _postgres(request.getfixturevalue("db"))
    else:
        yield from _service_bus()


def test_a_message_is_delivered_once_with_its_body(subject: QueueUnderTest) -> None:
    body = {"run_id": "r1", "partition": 3, "offset": 150, "nested": {"list": [1, "two", None, 4.5, True]}}
    subject.queue.send(Q, body, message_id="r1:3:150")
    assert subject.deliver(Q) == [("r1:3:150", body)]
    assert subject.deliver(Q) == []


def test_a_duplicate_id_is_dropped(subject: QueueUnderTest) -> None:
    subject.queue.send(Q, {"copy": 1}, message_id="r1:0:0")
    subject.queue.send(Q, {"copy": 2}, message_id="r1:0:0")
    subject.queue.send_batch(Q, [OutgoingMessage({"copy": 3}, "r1:0:0")])
    assert subject.deliver(Q) == [("r1:0:0", {"copy": 1})]


def test_a_duplicate_id_is_dropped_after_the_first_was_consumed(subject: QueueUnderTest) -> None:
    """A page re-sends its continuation when it finds the page already stored: the copy must not run again."""
    subject.queue.send(Q, {"copy": 1}, message_id="r1:0:50")
    assert len(subject.deliver(Q)) == 1
    subject.queue.send(Q, {"copy": 2}, message_id="r1:0:50")
    assert subject.deliver(Q) == []


def test_duplicates_inside_one_batch_are_dropped(subject: QueueUnderTest) -> None:
    subject.queue.send_batch(
        Q, [OutgoingMessage({"copy": 1}, "a"), OutgoingMessage({"copy": 2}, "a"), OutgoingMessage({"b": 1}, "b")]
    )
    assert sorted(subject.deliver(Q)) == [("a", {"copy": 1}), ("b", {"b": 1})]


def test_the_same_id_on_two_queues_is_two_messages(subject: QueueUnderTest) -> None:
    subject.queue.send(Q, {"work": 1}, message_id="same")
    subject.queue.send(CONSOLIDATE_QUEUE, {"consolidate": 1}, message_id="same")
    assert subject.deliver(Q) == [("same", {"work": 1})]
    assert subject.deliver(CONSOLIDATE_QUEUE) == [("same", {"consolidate": 1})]


def test_messages_without_ids_are_never_duplicates(subject: QueueUnderTest) -> None:
    subject.queue.send(Q, {"a": 1})
    subject.queue.send(Q, {"a": 1})
    subject.queue.send_batch(Q, [OutgoingMessage({"a": 1}), OutgoingMessage({"a": 1})])
    delivered = subject.deliver(Q)
    assert [body for _, body in delivered] == [{"a": 1}] * 4
    assert len({message_id for message_id, _ in delivered}) == 4


def test_a_delayed_message_is_not_visible_before_its_time(subject: QueueUnderTest) -> None:
    subject.queue.send(Q, {"retry": 1}, message_id="later", delay_s=60)
    subject.queue.send(Q, {"now": 1}, message_id="now")
    assert subject.deliver(Q) == [("now", {"now": 1})]
    subject.pass_time(55)
    assert subject.deliver(Q) == []
    subject.pass_time(10)
    assert subject.deliver(Q) == [("later", {"retry": 1})]


def test_delays_inside_a_batch_are_kept_per_message(subject: QueueUnderTest) -> None:
    subject.queue.send_batch(
        Q,
        [OutgoingMessage({"i": 0}, "m0"), OutgoingMessage({"i": 1}, "m1", 30), OutgoingMessage({"i": 2}, "m2", 90)],
    )
    assert subject.deliver(Q) == [("m0", {"i": 0})]
    subject.pass_time(40)
    assert subject.deliver(Q) == [("m1", {"i": 1})]
    subject.pass_time(60)
    assert subject.deliver(Q) == [("m2", {"i": 2})]


def test_a_delayed_duplicate_is_still_a_duplicate(subject: QueueUnderTest) -> None:
    subject.queue.send(Q, {"copy": 1}, message_id="r1:1:0", delay_s=30)
    subject.queue.send(Q, {"copy": 2}, message_id="r1:1:0")
    assert subject.deliver(Q) == []
    subject.pass_time(31)
    assert subject.deliver(Q) == [("r1:1:0", {"copy": 1})]


def test_a_batch_keeps_every_message(subject: QueueUnderTest) -> None:
    messages = [
        OutgoingMessage({"run_id": "r1", "partition": i % 10, "offset": i, "pad": "x" * 150}, f"r1:{i % 10}:{i}")
        for i in range(300)
    ]
    subject.queue.send_batch(Q, messages)
    delivered = sorted(subject.deliver(Q), key=lambda d: d[0])
    assert delivered == sorted(((str(m.message_id), m.body) for m in messages), key=lambda d: d[0])


def test_an_empty_batch_is_nothing(subject: QueueUnderTest) -> None:
    subject.queue.send_batch(Q, [])
    assert subject.deliver(Q) == []


def test_a_body_must_be_a_json_object(subject: QueueUnderTest) -> None:
    with pytest.raises(TypeError):
        subject.queue.send(Q, ["a", "list"])  # type: ignore[arg-type]
    assert subject.deliver(Q) == []
