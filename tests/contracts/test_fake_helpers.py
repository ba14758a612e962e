"""What the fakes offer tests beyond their port: stepping time, peeking at queues, recording calls."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from opus.domain.models import RunPlan, RunType
from opus.ports import WORK_QUEUE, OutgoingMessage
from opus.testing.fakes import FinishedPartition, InMemoryWorkQueue, RecordingCoordinator, SteppableClock

Q = WORK_QUEUE


def test_a_steppable_clock_moves_only_when_told() -> None:
    clock = SteppableClock(datetime(2025, 6, 1, tzinfo=UTC))
    assert clock.now() == clock.now() == datetime(2025, 6, 1, tzinfo=UTC)
    assert clock.advance(90.5) == datetime(2025, 6, 1, 0, 1, 30, 500000, tzinfo=UTC)
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        SteppableClock(datetime(2025, 6, 1))


def test_ready_peeks_and_take_consumes() -> None:
    clock = SteppableClock()
    queue = InMemoryWorkQueue(clock)
    queue.send(Q, {"i": 1}, message_id="a")
    queue.send(Q, {"i": 2}, message_id="b", delay_s=10)
    assert [m.message_id for m in queue.ready(Q)] == ["a"]
    assert [m.message_id for m in queue.ready(Q)] == ["a"], "peeking twice changes nothing"
    assert [m.message_id for m in queue.take(Q)] == ["a"]
    assert queue.ready(Q) == []
    clock.advance(10)
    [b] = queue.take(Q)
    assert (b.message_id, b.body, b.visible_at) == ("b", {"i": 2}, clock.now())
    assert [m.message_id for m in queue.sent(Q)] == ["a", "b"], "sent keeps everything accepted"


def test_the_fake_queue_counts_dropped_duplicates_and_copies_bodies() -> None:
    queue = InMemoryWorkQueue()
    body = {"i": 1}
    queue.send(Q, body, message_id="a")
    body["i"] = 2
    queue.send(Q, body, message_id="a")
    assert queue.dropped == 1
    assert queue.take(Q)[0].body == {"i": 1}


def test_the_fake_queue_keeps_every_message_sent_from_many_threads() -> None:
    queue = InMemoryWorkQueue()
    barrier = threading.Barrier(8)

    def send(t: int) -> None:
        barrier.wait()
        for i in range(50):
            queue.send_batch(Q, [OutgoingMessage({"t": t, "i": i}, f"{t}:{i}"), OutgoingMessage({"dup": 1}, "dup")])

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queue.take(Q)) == 8 * 50 + 1
    assert queue.dropped == 8 * 50 - 1


def test_the_recording_coordinator_records_starts_and_finished_partitions() -> None:
    coordinator = RecordingCoordinator()
    plan = RunPlan("r1", "nivoda", RunType.FULL, None, datetime(2025, 1, 1, tzinfo=UTC))
    coordinator.start(plan)
    coordinator.partition_finished("r1", 0, True)
    coordinator.partition_finished("r1", 1, False)
    assert coordinator.started == [plan]
    assert coordinator.finished == [FinishedPartition("r1", 0, True), FinishedPartition("r1", 1, False)]
