"""The PostgreSQL work queue against a real server: peek-lock, retries, dead letters, dedup, wake-up."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from opus.adapters.postgres_queue import (
    MAX_DELIVERY_REASON,
    LockLostError,
    PostgresQueue,
    ReceivedMessage,
    channel_for,
)
from opus.db.pool import Database
from opus.errors import TransientError
from opus.ports import WORK_QUEUE, OutgoingMessage, WorkQueue

pytestmark = pytest.mark.integration

Q = WORK_QUEUE


@pytest.fixture
def queue(db: Database) -> Iterator[PostgresQueue]:
    with PostgresQueue(db, max_deliveries=3) as q:
        yield q


def _one(queue: PostgresQueue, *, visibility_timeout_s: float = 300, wait_s: float = 0) -> ReceivedMessage:
    got = queue.receive(Q, visibility_timeout_s=visibility_timeout_s, wait_s=wait_s)
    assert len(got) == 1, got
    return got[0]


def test_it_is_a_work_queue(queue: PostgresQueue) -> None:
    producer: WorkQueue = queue
    producer.send(Q, {"a": 1})
    assert queue.counts(Q)["ready"] == 1


def test_send_receive_complete(queue: PostgresQueue) -> None:
    queue.send(Q, {"run_id": "r", "partition": 0, "offset": 0}, message_id="r:0:0")
    msg = _one(queue)
    assert msg.body == {"run_id": "r", "partition": 0, "offset": 0}
    assert (msg.queue, msg.message_id, msg.delivery_count) == (Q, "r:0:0", 1)
    assert queue.receive(Q) == [], "a locked message is invisible"
    queue.complete(msg)
    assert queue.counts(Q) == {"ready": 0, "completed": 1, "dead": 0}
    assert queue.receive(Q) == []


def test_queues_are_separate(queue: PostgresQueue) -> None:
    queue.send("other", {"a": 1}, message_id="same")
    queue.send(Q, {"b": 2}, message_id="same")
    assert _one(queue).body == {"b": 2}
    assert queue.receive("other")[0].body == {"a": 1}


def test_missing_message_ids_get_distinct_uuids(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    queue.send(Q, {"n": 1})
    got = queue.receive(Q, max_messages=5)
    assert len(got) == 2
    assert got[0].message_id != got[1].message_id


def test_an_unsettled_message_reappears_after_its_visibility_timeout(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    first = _one(queue, visibility_timeout_s=1)
    assert queue.receive(Q) == []
    time.sleep(1.2)
    second = _one(queue, visibility_timeout_s=30)
    assert second.id == first.id
    assert second.delivery_count == 2
    assert second.lock_token != first.lock_token


def test_abandon_redelivers_with_a_higher_delivery_count(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    queue.abandon(_one(queue))
    again = _one(queue)
    assert again.delivery_count == 2


def test_abandon_with_delay_hides_the_message_until_then(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    queue.abandon(_one(queue), delay_s=1.0)
    assert queue.receive(Q) == []
    time.sleep(1.2)
    assert _one(queue).delivery_count == 2


def test_dead_lettered_after_max_deliveries_by_abandon(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1}, message_id="poison")
    for expected in (1, 2, 3):
        msg = _one(queue)
        assert msg.delivery_count == expected
        queue.abandon(msg)
    assert queue.receive(Q) == []
    assert queue.counts(Q) == {"ready": 0, "completed": 0, "dead": 1}
    [dead] = queue.dead_letters(Q)
    assert (dead.message_id, dead.reason, dead.delivery_count) == ("poison", MAX_DELIVERY_REASON, 3)


def test_dead_lettered_after_max_deliveries_by_expired_locks(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1}, message_id="crashy")
    for expected in (1, 2, 3):
        assert _one(queue, visibility_timeout_s=0.05).delivery_count == expected
        time.sleep(0.1)
    assert queue.receive(Q) == [], "a fourth delivery is refused"
    [dead] = queue.dead_letters(Q)
    assert dead.reason == MAX_DELIVERY_REASON


def test_a_message_dead_lettered_on_receive_does_not_take_a_place_in_the_batch(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 0}, message_id="old")
    for _ in range(3):
        _one(queue, visibility_timeout_s=0)
    queue.send_batch(Q, [OutgoingMessage({"n": 1}), OutgoingMessage({"n": 2})])
    got = queue.receive(Q, max_messages=2)
    assert sorted(m.body["n"] for m in got) == [1, 2]
    assert queue.counts(Q)["dead"] == 1


def test_explicit_dead_letter_records_the_reason(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1}, message_id="bad")
    queue.dead_letter(_one(queue), "MappingError: no shape")
    assert queue.receive(Q) == []
    [dead] = queue.dead_letters(Q)
    assert (dead.message_id, dead.reason, dead.body) == ("bad", "MappingError: no shape", {"n": 1})


def test_a_duplicate_id_is_dropped_while_pending_and_after_completion(queue: PostgresQueue) -> None:
    queue.send(Q, {"v": 1}, message_id="dup")
    queue.send(Q, {"v": 2}, message_id="dup")
    assert queue.counts(Q)["ready"] == 1
    msg = _one(queue)
    assert msg.body == {"v": 1}
    queue.complete(msg)
    queue.send(Q, {"v": 3}, message_id="dup")
    assert queue.receive(Q) == []
    assert queue.counts(Q) == {"ready": 0, "completed": 1, "dead": 0}


def test_an_id_is_accepted_again_after_the_dedup_window(db: Database) -> None:
    with PostgresQueue(db, dedup_window_s=0.5) as queue:
        queue.send(Q, {"v": 1}, message_id="later")
        queue.complete(_one(queue))
        time.sleep(0.7)
        queue.send(Q, {"v": 2}, message_id="later")
        again = _one(queue)
        assert (again.body, again.delivery_count) == ({"v": 2}, 1)


def test_prune_deletes_finished_messages_past_the_window_only(queue: PostgresQueue) -> None:
    queue.send_batch(Q, [OutgoingMessage({"n": i}, f"m{i}") for i in range(3)])
    a, b, _ = queue.receive(Q, max_messages=3)
    queue.complete(a)
    queue.dead_letter(b, "broken")
    assert queue.prune(3600) == 0
    time.sleep(0.1)
    assert queue.prune(0.05) == 2
    assert queue.counts(Q) == {"ready": 1, "completed": 0, "dead": 0}


def test_a_delayed_message_is_invisible_until_due(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1}, delay_s=1.0)
    assert queue.receive(Q) == []
    time.sleep(1.2)
    assert _one(queue).body == {"n": 1}


def test_send_batch_enqueues_all_drops_duplicates_and_keeps_delays(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": -1}, message_id="m0")
    queue.send_batch(Q, [
        OutgoingMessage({"n": 0}, "m0"),  # already on the queue
        OutgoingMessage({"n": 1}, "m1"),
        OutgoingMessage({"n": 1}, "m1"),  # repeated inside the batch
        OutgoingMessage({"n": 2}),
        OutgoingMessage({"n": 3}, "m3", delay_s=30),
    ])
    assert queue.counts(Q)["ready"] == 4
    got = queue.receive(Q, max_messages=10)
    assert sorted(m.body["n"] for m in got) == [-1, 1, 2]
    queue.send_batch(Q, [])


def test_a_stale_lock_token_cannot_settle_the_new_holders_message(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    stale = _one(queue, visibility_timeout_s=0.2)
    time.sleep(0.3)
    holder = _one(queue)
    for settle in (queue.complete, queue.abandon, lambda m: queue.dead_letter(m, "x")):
        with pytest.raises(LockLostError):
            settle(stale)
    with pytest.raises(LockLostError):
        queue.renew_lock(stale, 30)
    assert issubclass(LockLostError, TransientError)
    assert queue.counts(Q)["ready"] == 1, "the holder's message is untouched"
    queue.complete(holder)
    assert queue.counts(Q)["completed"] == 1
    with pytest.raises(LockLostError):
        queue.complete(holder)


def test_renew_lock_keeps_the_message_hidden(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1})
    msg = _one(queue, visibility_timeout_s=0.6)
    for _ in range(3):
        time.sleep(0.4)
        queue.renew_lock(msg, 0.6)
        assert queue.receive(Q) == []
    queue.complete(msg)


@pytest.mark.parametrize("consumers", [2, 8])
def test_concurrent_consumers_never_share_a_message_and_complete_each_once(
    db: Database, consumers: int
) -> None:
    n = 200
    with PostgresQueue(db) as queue:
        queue.send_batch(Q, [OutgoingMessage({"n": i}, f"m{i}") for i in range(n)])
        received: list[int] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                while got := queue.receive(Q, max_messages=3, visibility_timeout_s=60):
                    for msg in got:
                        with lock:
                            received.append(msg.body["n"])
                        queue.complete(msg)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=consume) for _ in range(consumers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        counts = Counter(received)
        assert [k for k, c in counts.items() if c > 1] == [], "a message went to two consumers"
        assert set(counts) == set(range(n))
        assert queue.counts(Q) == {"ready": 0, "completed": n, "dead": 0}


def test_a_waiting_receive_wakes_up_when_a_message_is_sent(queue: PostgresQueue) -> None:
    result: list[ReceivedMessage] = []
    elapsed: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        result.extend(queue.receive(Q, wait_s=5))
        elapsed.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    queue.send(Q, {"wake": True})
    waiter.join(10)
    assert [m.body for m in result] == [{"wake": True}]
    assert elapsed[0] < 3.0, "it returned on the notification, not at the end of its wait"


def test_a_waiting_receive_wakes_up_when_a_scheduled_message_is_due(queue: PostgresQueue) -> None:
    queue.send(Q, {"later": True}, delay_s=0.5)
    started = time.monotonic()
    got = queue.receive(Q, wait_s=5)
    assert [m.body for m in got] == [{"later": True}]
    assert time.monotonic() - started < 3.0


def test_a_waiting_receive_ignores_other_queues_and_gives_up_after_its_wait(queue: PostgresQueue) -> None:
    sender = threading.Timer(0.2, lambda: queue.send("other", {"n": 1}))
    sender.start()
    started = time.monotonic()
    assert queue.receive(Q, wait_s=0.8) == []
    assert time.monotonic() - started >= 0.8
    sender.join()
    assert channel_for(Q) != channel_for("other")
    assert len(channel_for("q" * 100)) <= 63


def test_send_in_joins_the_callers_transaction(db: Database, queue: PostgresQueue) -> None:
    class Boom(Exception):
        pass

    accepted: list[int] = []

    def produce_then_fail() -> None:
        with db.transaction() as conn:
            accepted.append(queue.send_in(conn, Q, {"n": 1}, message_id="rolled-back"))
            raise Boom

    with pytest.raises(Boom):
        produce_then_fail()
    assert accepted == [1]
    assert queue.counts(Q)["ready"] == 0
    with db.transaction() as conn:
        queue.send_batch_in(conn, Q, [OutgoingMessage({"n": 2}, "kept")])
        assert queue.send_in(conn, Q, {"n": 3}, message_id="kept") == 0, "a duplicate is reported"
    assert _one(queue).message_id == "kept"


def test_invalid_arguments_are_rejected(db: Database, queue: PostgresQueue) -> None:
    with pytest.raises(ValueError, match="max_deliveries"):
        PostgresQueue(db, max_deliveries=0)
    with pytest.raises(ValueError, match="max_messages"):
        queue.receive(Q, max_messages=0)
    with pytest.raises(TypeError):
        queue.send(Q, [1, 2])  # type: ignore[arg-type]


def test_release_hands_a_message_back_as_if_it_had_not_been_received(queue: PostgresQueue) -> None:
    queue.send(Q, {"n": 1}, message_id="m")
    for _ in range(25):  # far more than max_deliveries: consumers stopping together pass one message around
        msg = _one(queue)
        assert msg.delivery_count == 1
        queue.release(msg)
    assert queue.counts(Q) == {"ready": 1, "completed": 0, "dead": 0}
    with pytest.raises(LockLostError):
        queue.release(msg)
