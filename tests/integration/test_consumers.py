"""Queue consumer threads against a real PostgreSQL queue: settlement by outcome, lock renewal, graceful stop."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from opus.adapters.postgres_queue import MAX_DELIVERY_REASON, PostgresQueue
from opus.db.pool import Database
from opus.errors import PermanentError, TransientError
from opus.local.consumers import QueueConsumer
from opus.pipeline.outcomes import Outcome, PartitionFinished
from opus.ports import JSON, WORK_QUEUE, OutgoingMessage

pytestmark = pytest.mark.integration

Q = WORK_QUEUE


@pytest.fixture
def queue(db: Database) -> Iterator[PostgresQueue]:
    with PostgresQueue(db, max_deliveries=3) as q:
        yield q


def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class Recorder:
    """A handler that records each call (body, delivery number, time) and then runs `behaviour`.

    Handlers see only the body; the delivery number is the Recorder's own count of the calls with that body, which
    is what the transport's delivery count would say (the tests send distinct bodies).
    """

    def __init__(self, behaviour: Callable[[JSON, int], Outcome | None] = lambda body, count: None) -> None:
        self.calls: list[tuple[JSON, int, float]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._behaviour = behaviour

    def __call__(self, body: JSON) -> Outcome:
        key = json.dumps(body, sort_keys=True)
        with self._lock:
            self._seen[key] += 1
            count = self._seen[key]
            self.calls.append((body, count, time.monotonic()))
        return self._behaviour(body, count) or Outcome.done()


def test_a_successful_handler_completes_every_message(queue: PostgresQueue) -> None:
    handler = Recorder()
    queue.send_batch(Q, [OutgoingMessage({"n": i}) for i in range(20)])
    with QueueConsumer(queue, Q, handler, concurrency=3, wait_s=0.2) as consumer:
        wait_until(lambda: queue.counts(Q)["completed"] == 20)
        wait_until(lambda: consumer.processed == 20)
    assert sorted(body["n"] for body, _, _ in handler.calls) == list(range(20))
    assert consumer.stats().failed == 0
    assert consumer.stats().in_flight == 0


def test_a_message_sent_while_consumers_wait_is_picked_up(queue: PostgresQueue) -> None:
    handler = Recorder()
    with QueueConsumer(queue, Q, handler, wait_s=5) as consumer:
        time.sleep(0.3)
        queue.send(Q, {"late": True})
        wait_until(lambda: consumer.processed == 1, timeout_s=4)


def test_a_transient_error_is_retried_after_its_retry_after(queue: PostgresQueue) -> None:
    def flaky(body: JSON, count: int) -> None:
        if count == 1:
            raise TransientError("rate limited", retry_after=0.5)

    handler = Recorder(flaky)
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2) as consumer:
        wait_until(lambda: consumer.processed == 1)
    (_, first, t1), (_, second, t2) = handler.calls
    assert (first, second) == (1, 2)
    assert t2 - t1 >= 0.45, "the retry waited for retry_after"
    assert consumer.stats().failed == 1
    assert queue.counts(Q) == {"ready": 0, "completed": 1, "dead": 0}


def test_a_transient_error_without_retry_after_backs_off_exponentially(queue: PostgresQueue) -> None:
    def flaky(body: JSON, count: int) -> None:
        if count < 3:
            raise TransientError("timeout")

    handler = Recorder(flaky)
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2, retry_base_s=0.3) as consumer:
        wait_until(lambda: consumer.processed == 1)
    times = [t for _, _, t in handler.calls]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.28
    assert times[2] - times[1] >= 0.58, "the second retry waits twice as long"


def test_a_permanent_error_dead_letters_with_its_message(queue: PostgresQueue) -> None:
    def broken(body: JSON, count: int) -> None:
        raise PermanentError("no such shape: BLOB")

    handler = Recorder(broken)
    queue.send(Q, {"n": 1}, message_id="bad")
    with QueueConsumer(queue, Q, handler, wait_s=0.2) as consumer:
        wait_until(lambda: queue.counts(Q)["dead"] == 1)
    [dead] = queue.dead_letters(Q)
    assert dead.message_id == "bad"
    assert dead.reason is not None
    assert "no such shape: BLOB" in dead.reason
    assert len(handler.calls) == 1, "a permanent error is not retried"
    assert consumer.stats().dead_lettered == 1


def test_an_unexpected_error_is_redelivered_then_dead_lettered(queue: PostgresQueue) -> None:
    def buggy(body: JSON, count: int) -> None:
        raise KeyError("oops")

    handler = Recorder(buggy)
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2) as consumer:
        wait_until(lambda: queue.counts(Q)["dead"] == 1)
    assert [count for _, count, _ in handler.calls] == [1, 2, 3]
    assert queue.dead_letters(Q)[0].reason == MAX_DELIVERY_REASON
    assert consumer.stats().failed == 3


def test_lock_renewal_keeps_a_slow_handler_from_being_redelivered(queue: PostgresQueue) -> None:
    handler = Recorder(lambda body, count: time.sleep(2.5))
    queue.send(Q, {"slow": True})
    with QueueConsumer(queue, Q, handler, concurrency=2, visibility_timeout_s=1, wait_s=0.2) as consumer:
        wait_until(lambda: consumer.processed == 1, timeout_s=10)
        time.sleep(0.5)
    assert [count for _, count, _ in handler.calls] == [1], "delivered once despite a 1 s lock"
    assert queue.counts(Q) == {"ready": 0, "completed": 1, "dead": 0}


def test_stop_lets_in_flight_handlers_finish_and_loses_nothing(queue: PostgresQueue) -> None:
    started = threading.Event()

    def slow(body: JSON, count: int) -> None:
        started.set()
        time.sleep(0.5)

    first = Recorder(slow)
    n = 10
    queue.send_batch(Q, [OutgoingMessage({"n": i}, f"m{i}") for i in range(n)])
    consumer = QueueConsumer(queue, Q, first, concurrency=2, wait_s=0.2)
    consumer.start()
    assert started.wait(5)
    assert consumer.stop(timeout_s=5) is True
    done = consumer.processed
    assert 1 <= done < n
    assert len(first.calls) == done, "every handler that started also finished and completed"
    assert queue.counts(Q) == {"ready": n - done, "completed": done, "dead": 0}

    second = Recorder()
    with QueueConsumer(queue, Q, second, concurrency=2, wait_s=0.2) as rest:
        wait_until(lambda: rest.processed == n - done)
    handled = Counter(body["n"] for body, _, _ in first.calls + second.calls)
    assert handled == Counter(range(n)), "each message handled exactly once across the two consumers"


def test_stop_with_a_handler_outliving_the_timeout_still_settles_its_message(queue: PostgresQueue) -> None:
    release = threading.Event()

    def stuck(body: JSON, count: int) -> None:
        release.wait(10)

    handler = Recorder(stuck)
    queue.send(Q, {"n": 1})
    consumer = QueueConsumer(queue, Q, handler, visibility_timeout_s=1, wait_s=0.2)
    consumer.start()
    wait_until(lambda: consumer.stats().in_flight == 1)
    assert consumer.stop(timeout_s=0.2) is False
    time.sleep(1.2)
    assert queue.receive(Q) == [], "its lock is still renewed"
    release.set()
    wait_until(lambda: queue.counts(Q)["completed"] == 1)


def test_invalid_consumer_settings_are_rejected(queue: PostgresQueue) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        QueueConsumer(queue, Q, Recorder(), concurrency=0)
    consumer = QueueConsumer(queue, Q, Recorder(), wait_s=0.1)
    consumer.start()
    with pytest.raises(RuntimeError):
        consumer.start()
    consumer.request_stop()
    assert consumer.stop(timeout_s=5)


def test_a_retry_outcome_sends_its_copy_later_and_completes_the_original(queue: PostgresQueue) -> None:
    def retry_once(body: JSON, count: int) -> Outcome | None:
        if "copy" not in body:
            return Outcome.retry_later({"copy": True}, "the-copy", 0.4, "try later")
        return None

    handler = Recorder(retry_once)
    queue.send(Q, {"n": 1}, message_id="original")
    with QueueConsumer(queue, Q, handler, wait_s=0.2) as consumer:
        wait_until(lambda: consumer.processed == 2)
    (first, _, t1), (second, _, t2) = handler.calls
    assert (first, second) == ({"n": 1}, {"copy": True})
    assert t2 - t1 >= 0.35, "the copy waited for its delay"
    assert queue.counts(Q) == {"ready": 0, "completed": 2, "dead": 0}, "no redelivery of the original"


def test_a_give_up_outcome_dead_letters_with_its_reason(queue: PostgresQueue) -> None:
    handler = Recorder(lambda body, count: Outcome.give_up("malformed work item"))
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2):
        wait_until(lambda: queue.counts(Q)["dead"] == 1)
    [dead] = queue.dead_letters(Q)
    assert dead.reason == "malformed work item"
    assert len(handler.calls) == 1


def test_finished_partitions_are_announced_before_the_message_is_completed(queue: PostgresQueue) -> None:
    seen: list[tuple[PartitionFinished, int]] = []

    def announce(finished: PartitionFinished) -> None:
        seen.append((finished, queue.counts(Q)["completed"]))

    handler = Recorder(lambda body, count: Outcome.done(PartitionFinished("r", 3, True)))
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2, on_finished=announce) as consumer:
        wait_until(lambda: consumer.processed == 1)
    assert seen == [(PartitionFinished("r", 3, True), 0)], "announced once, while the message was still open"


def test_a_failed_announcement_brings_the_message_back(queue: PostgresQueue) -> None:
    attempts: list[int] = []

    def announce(finished: PartitionFinished) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the database blinked")

    handler = Recorder(lambda body, count: Outcome.done(PartitionFinished("r", 0, True)))
    queue.send(Q, {"n": 1})
    with QueueConsumer(queue, Q, handler, wait_s=0.2, on_finished=announce) as consumer:
        wait_until(lambda: consumer.processed == 1)
    assert len(handler.calls) == 2, "redelivered"
    assert len(attempts) == 2, "announced again"
