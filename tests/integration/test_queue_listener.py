"""The PostgreSQL work queue's wake-ups: one LISTEN connection per queue object, however many threads wait.

A connection per waiting thread made one process at the defaults (64 page-worker threads, a pool of 8) hold 72
connections, against PostgreSQL's default `max_connections` of 100.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from opus.adapters.postgres_queue import PostgresQueue, ReceivedMessage, _Wakeups, channel_for
from opus.config import Settings
from opus.db.pool import Database
from opus.ports import WORK_QUEUE, OutgoingMessage

pytestmark = pytest.mark.integration

Q = WORK_QUEUE



def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Poll `predicate` until it holds; fail naming `what` if it does not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        threading.Event().wait(0.01)


def _tagged(url: str, name: str) -> str:
    """The URL with an application_name, so that pg_stat_activity tells this test's connections apart."""
    return make_conninfo(url, application_name=name)


def _backends(db: Database, name: str, *, listening: bool = False) -> list[int]:
    """Backends connected under `name` (those whose last statement was a LISTEN, if `listening`)."""
    with db.autocommit() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND (NOT %s OR query LIKE 'LISTEN %%')"
            " ORDER BY pid", (name, listening),
        ).fetchall()
    return [r["pid"] for r in rows]


def test_waiting_receivers_of_one_process_share_one_listening_connection(database_url: str, db: Database) -> None:
    # At the defaults (64 page-worker threads, a pool of 8), a connection per waiting thread made 72. (`db` only
    # empties the tables: this test opens a pool of its own, tagged so that its connections can be counted.)
    threads = Settings.model_fields["worker_concurrency"].default
    pool = Settings.model_fields["pg_pool_max"].default
    name = "opus_test_many_waiters"
    got: list[ReceivedMessage] = []
    lock = threading.Lock()

    def wait() -> None:
        found = queue.receive(Q, wait_s=60)
        with lock:
            got.extend(found)

    with Database(_tagged(database_url, name), max_size=pool) as own:
        with PostgresQueue(own) as queue:
            waiters = [threading.Thread(target=wait) for _ in range(threads)]
            for t in waiters:
                t.start()
            try:
                _until(lambda: queue.waiting(Q) == threads, f"{threads} receivers waiting")
                held = _backends(own, name)
                assert len(held) <= pool + 1, f"{len(held)} connections for {threads} waiting receivers"
                assert len(_backends(own, name, listening=True)) == 1
            finally:
                queue.send_batch(Q, [OutgoingMessage({"n": i}) for i in range(threads)])
                for t in waiters:
                    t.join(30)
            assert sorted(m.body["n"] for m in got) == list(range(threads)), "every waiter woke to one message"
        # The server ends a backend shortly after its client hangs up: wait for it rather than race it.
        _until(lambda: _backends(own, name, listening=True) == [], "closing the queue closes its listening connection")


def test_receivers_still_wake_after_the_listening_connection_is_lost(database_url: str, db: Database) -> None:
    name = "opus_test_listener_lost"
    got: list[ReceivedMessage] = []
    with Database(_tagged(database_url, name), max_size=2) as own, PostgresQueue(own) as queue:
        waiter = threading.Thread(target=lambda: got.extend(queue.receive(Q, wait_s=60)))
        waiter.start()
        _until(lambda: queue.waiting(Q) == 1, "the receiver waiting")
        [lost] = _backends(own, name, listening=True)
        with own.autocommit() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (lost,))
        _until(lambda: _backends(own, name, listening=True) not in ([], [lost]), "a new listening connection")
        _until(lambda: queue.waiting(Q) == 1, "the receiver waiting again")
        queue.send(Q, {"after": "reconnect"})
        waiter.join(30)
        assert not waiter.is_alive(), "the notification on the new connection woke the receiver"
        assert [m.body for m in got] == [{"after": "reconnect"}]


def test_a_notification_heard_before_the_wait_begins_ends_the_wait_at_once(database_url: str) -> None:
    """The window between a receiver's empty claim and its wait: a message sent then must not be slept through."""
    channel = channel_for(Q)
    wakeups = _Wakeups(database_url)
    try:
        wakeups.listen(channel, 30)
        seen = wakeups.generation(channel)  # as receive reads it, before its claim
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, '')", (channel,))
        _until(lambda: wakeups.generation(channel) != seen, "the notification heard")
        assert wakeups.wait(channel, seen, 0), "the wait saw the notification that came before it"
        assert not wakeups.wait(channel, wakeups.generation(channel), 0), "and nothing else"
    finally:
        wakeups.close()
