"""The single-machine WorkQueue: a durable queue in PostgreSQL with the Service Bus semantics Opus relies on.

- Peek-lock: `receive` hides a message for `visibility_timeout_s` and hands out a fresh lock token;
  `complete`, `abandon`, `dead_letter` and `renew_lock` must present that token. A token that no longer
  matches (the lock expired and another consumer received the message) raises LockLostError and changes
  nothing. A holder whose lock expired but whom nobody replaced may still settle: nothing is lost by it.
- Delivery count rises on every receive; a message already delivered `max_deliveries` times is dead-lettered
  ("MaxDeliveryCountExceeded") instead of being handed out again, as is one abandoned on its last delivery.
- Duplicate detection: a message id is unique per queue; a second send of it is dropped, even after the first
  was completed, until the first has been finished for longer than `dedup_window_s` (then the id is reused).
  Counting the window from the end of the first message, not its enqueue, errs on the side of dropping.
- Scheduled messages: `delay_s` keeps a message invisible until then.
- Several consumers: `FOR UPDATE SKIP LOCKED` lets receivers take different rows without waiting on each
  other.
- Wake-up: every send issues `pg_notify` on the queue's channel inside the sending transaction, so listeners
  hear of it exactly when the message becomes readable. One connection per `PostgresQueue`, outside the pool,
  LISTENs on the channels of every queue waited on, read by one thread; a waiting `receive` sleeps on an
  in-process signal until a notification, the next scheduled message or expiring lock, or its deadline, whichever
  comes first, then claims through the pool. So a process holds its pool and one more connection however many
  threads wait (a connection per waiting thread ran 64 worker threads into PostgreSQL's `max_connections`).
"""

from __future__ import annotations

import hashlib
import logging
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from opus.db.pool import Connection, Database
from opus.db.queries import Queries
from opus.errors import TransientError
from opus.ports import JSON, OutgoingMessage

logger = logging.getLogger(__name__)

Q = Queries("queue")

STATES = ("ready", "completed", "dead")
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
_CHANNEL_PREFIX = "opus_queue."
_MAX_IDENTIFIER = 63  # PostgreSQL truncates longer identifiers; LISTEN and pg_notify would then disagree
# When the next due message is already visible but a concurrent receiver holds its row, wait a little rather
# than spin on it.
_MIN_WAIT_S = 0.05
# The listening connection, once lost, is reopened after this, doubling up to the cap while the server is away.
_RECONNECT_S = 0.1
_RECONNECT_MAX_S = 10.0


class LockLostError(TransientError):
    """The message's lock expired and it was received again, completed, or dead-lettered by someone else."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    id: int
    queue: str
    message_id: str
    body: JSON
    delivery_count: int
    lock_token: uuid.UUID
    enqueued_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    message_id: str
    body: JSON
    delivery_count: int
    reason: str | None
    enqueued_at: datetime
    finished_at: datetime | None


def channel_for(queue: str) -> str:
    """The LISTEN/NOTIFY channel of a queue: readable when it fits in an identifier, else a digest."""
    channel = _CHANNEL_PREFIX + queue
    if len(channel.encode()) <= _MAX_IDENTIFIER:
        return channel
    return _CHANNEL_PREFIX + hashlib.sha256(queue.encode()).hexdigest()[:40]


class PostgresQueue:
    """Implements `opus.ports.WorkQueue` and the consumer side; safe to share between threads."""

    def __init__(self, db: Database, *, max_deliveries: int = 10, dedup_window_s: float = 3600) -> None:
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be at least 1, not {max_deliveries}")
        if dedup_window_s < 0:
            raise ValueError(f"dedup_window_s must not be negative, not {dedup_window_s}")
        self._db = db
        self.max_deliveries = max_deliveries
        self.dedup_window_s = float(dedup_window_s)
        self._wakeups = _Wakeups(db.url)

    # -- producer side ---------------------------------------------------------------------------------------

    def send(self, queue: str, body: JSON, *, message_id: str | None = None, delay_s: float = 0.0) -> None:
        with self._db.transaction() as conn:
            self.send_in(conn, queue, body, message_id=message_id, delay_s=delay_s)

    def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        with self._db.transaction() as conn:
            self.send_batch_in(conn, queue, messages)

    def send_in(
        self, conn: Connection, queue: str, body: JSON, *, message_id: str | None = None, delay_s: float = 0.0
    ) -> int:
        """Enqueue within the caller's open transaction; returns 1, or 0 if dropped as a duplicate."""
        return self.send_batch_in(conn, queue, [OutgoingMessage(body, message_id, delay_s)])

    def send_batch_in(self, conn: Connection, queue: str, messages: Sequence[OutgoingMessage]) -> int:
        """Enqueue many within the caller's open transaction; returns how many were not duplicates.

        Nothing is visible to consumers, and no one is woken, until the caller commits.
        """
        if not messages:
            return 0
        ids: list[str] = []
        bodies: list[Jsonb] = []
        delays: list[float] = []
        seen: set[str] = set()
        for m in messages:
            if not isinstance(m.body, dict):
                raise TypeError(f"a message body must be a JSON object, not {type(m.body).__name__}")
            message_id = m.message_id or str(uuid.uuid4())
            # One INSERT cannot touch the same row twice, and a repeat inside a batch is a duplicate anyway.
            if message_id in seen:
                continue
            seen.add(message_id)
            ids.append(message_id)
            bodies.append(Jsonb(m.body))
            delays.append(max(0.0, float(m.delay_s)))
        params = {
            "queue": queue, "message_ids": ids, "bodies": bodies, "delays": delays,
            "dedup_window_s": self.dedup_window_s,
        }
        accepted = len(conn.execute(Q.enqueue, params).fetchall())
        if accepted:
            conn.execute(Q.notify, {"channel": channel_for(queue)})
        if accepted < len(messages):
            logger.debug(
                "duplicate messages dropped", extra={"queue": queue, "dropped": len(messages) - accepted}
            )
        return accepted

    # -- consumer side ---------------------------------------------------------------------------------------

    def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout_s: float = 300, wait_s: float = 0.0
    ) -> list[ReceivedMessage]:
        """Lock and return up to `max_messages` visible messages, waiting up to `wait_s` for one to appear."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        if visibility_timeout_s < 0:
            raise ValueError(f"visibility_timeout_s must not be negative, not {visibility_timeout_s}")
        found = self._receive_now(queue, max_messages, visibility_timeout_s)
        if found or wait_s <= 0:
            return found
        deadline = time.monotonic() + wait_s
        channel = channel_for(queue)
        wakeups = self._wakeups
        # Best effort within the wait: should the LISTEN not be on in time, the waits below still end at the
        # next due message or the deadline, so the receive degrades to polling instead of failing.
        wakeups.listen(channel, wait_s)
        while True:
            # Read before claiming: a message committed after the claim's snapshot notifies after this read, so
            # the wait below returns at once rather than missing it.
            seen = wakeups.generation(channel)
            found = self._receive_now(queue, max_messages, visibility_timeout_s)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            with self._db.autocommit() as conn:
                row = conn.execute(Q.next_visible_in, {"queue": queue}).fetchone()
            due = row["seconds"] if row else None
            pause = left if due is None else min(left, max(due, _MIN_WAIT_S))
            wakeups.wait(channel, seen, pause)

    def complete(self, msg: ReceivedMessage) -> None:
        with self._consumer_transaction() as conn:
            row = conn.execute(Q.complete, {"id": msg.id, "lock_token": msg.lock_token}).fetchone()
        if row is None:
            raise LockLostError(f"cannot complete message {msg.message_id!r} on {msg.queue!r}: lock lost")

    def abandon(self, msg: ReceivedMessage, *, delay_s: float = 0.0) -> None:
        """Release the lock so that the message is received again, after `delay_s`."""
        params = {
            "id": msg.id, "lock_token": msg.lock_token, "delay_s": max(0.0, float(delay_s)),
            "max_deliveries": self.max_deliveries,
        }
        with self._consumer_transaction() as conn:
            row = conn.execute(Q.abandon, params).fetchone()
            if row is not None and row["state"] == "ready":
                conn.execute(Q.notify, {"channel": channel_for(msg.queue)})
        if row is None:
            raise LockLostError(f"cannot abandon message {msg.message_id!r} on {msg.queue!r}: lock lost")
        if row["state"] == "dead":
            _log_dead(msg.queue, msg.message_id, MAX_DELIVERY_REASON, msg.delivery_count)

    def release(self, msg: ReceivedMessage) -> None:
        """Hand back a message that was received but not worked on, as if it had not been received."""
        with self._consumer_transaction() as conn:
            row = conn.execute(Q.release, {"id": msg.id, "lock_token": msg.lock_token}).fetchone()
            if row is not None:
                conn.execute(Q.notify, {"channel": channel_for(msg.queue)})
        if row is None:
            raise LockLostError(f"cannot release message {msg.message_id!r} on {msg.queue!r}: lock lost")

    def dead_letter(self, msg: ReceivedMessage, reason: str) -> None:
        params = {"id": msg.id, "lock_token": msg.lock_token, "reason": reason}
        with self._consumer_transaction() as conn:
            row = conn.execute(Q.dead_letter, params).fetchone()
        if row is None:
            raise LockLostError(f"cannot dead-letter message {msg.message_id!r} on {msg.queue!r}: lock lost")
        _log_dead(msg.queue, msg.message_id, reason, msg.delivery_count)

    def renew_lock(self, msg: ReceivedMessage, visibility_timeout_s: float) -> datetime:
        """Extend the lock to `visibility_timeout_s` from now; returns the new expiry."""
        params = {"id": msg.id, "lock_token": msg.lock_token, "visibility_timeout_s": visibility_timeout_s}
        with self._consumer_transaction() as conn:
            row = conn.execute(Q.renew_lock, params).fetchone()
        if row is None:
            raise LockLostError(f"cannot renew the lock of {msg.message_id!r} on {msg.queue!r}: lock lost")
        expiry: datetime = row["visible_at"]
        return expiry

    # -- operators -------------------------------------------------------------------------------------------

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete completed and dead messages finished longer ago than this (default: the dedup window)."""
        age = self.dedup_window_s if older_than_s is None else older_than_s
        with self._db.transaction() as conn:
            deleted = conn.execute(Q.prune, {"older_than_s": float(age)}).rowcount
        logger.info("queue pruned", extra={"deleted": deleted, "older_than_s": age})
        return deleted

    def counts(self, queue: str) -> dict[str, int]:
        """Messages per state; 'ready' includes scheduled and locked (in-flight) ones."""
        with self._db.connection() as conn:
            rows = conn.execute(Q.counts, {"queue": queue}).fetchall()
        found = {r["state"]: r["n"] for r in rows}
        return {state: found.get(state, 0) for state in STATES}

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        with self._db.connection() as conn:
            rows = conn.execute(Q.dead_letters, {"queue": queue, "limit": limit}).fetchall()
        return [DeadLetter(**r) for r in rows]

    def waiting(self, queue: str) -> int:
        """Receivers of this queue object waiting for a message on `queue` at this moment."""
        return self._wakeups.waiting(channel_for(queue))

    def close(self) -> None:
        """Close the listening connection and stop its thread; the pool belongs to the caller.

        A receive waiting now, or one called after this, still works: it claims again at its due times.
        """
        self._wakeups.close()

    def __enter__(self) -> PostgresQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _receive_now(
        self, queue: str, max_messages: int, visibility_timeout_s: float
    ) -> list[ReceivedMessage]:
        received: list[ReceivedMessage] = []
        params: dict[str, Any] = {
            "queue": queue, "visibility_timeout_s": float(visibility_timeout_s),
            "max_deliveries": self.max_deliveries,
        }
        # Rows dead-lettered on the way take places in the batch; ask again for those (rarely more than once).
        while len(received) < max_messages:
            params["max_messages"] = max_messages - len(received)
            with self._consumer_transaction() as conn:
                rows = conn.execute(Q.receive, params).fetchall()
            exhausted = 0
            for r in rows:
                if r.pop("state") == "dead":
                    exhausted += 1
                    _log_dead(queue, r["message_id"], MAX_DELIVERY_REASON, r["delivery_count"])
                else:
                    received.append(ReceivedMessage(**r))
            if not exhausted:
                break
        return received

    @contextmanager
    def _consumer_transaction(self) -> Iterator[Connection]:
        """A transaction for receiving and settling, committed without waiting for the WAL flush.

        A server crash can then undo the last fraction of a second of receives and settlements; each undone
        one only makes a message deliverable again, which at-least-once delivery allows anyway. Sends keep
        full durability: losing one would lose work. This skips one disk flush per step (about 4 ms here).
        """
        with self._db.transaction() as conn:
            conn.execute(Q.relaxed_commit)
            yield conn

def _log_dead(queue: str, message_id: str, reason: str, delivery_count: int) -> None:
    extra = {"queue": queue, "message_id": message_id, "reason": reason, "delivery_count": delivery_count}
    logger.warning("message dead-lettered", extra=extra)


@dataclass(slots=True)
class _Channel:
    """A channel's signal. `generation` counts the notifications heard on it (and reconnections)."""

    changed: threading.Condition
    generation: int = 0
    waiting: int = 0


class _Wakeups:
    """One LISTEN connection for all the receivers of a `PostgresQueue`, read by one thread.

    The thread starts with the first waiting receive (a process that only sends opens no connection for it) and
    owns the connection: psycopg's `notifies()` holds the connection's lock while it waits, so no other thread
    could issue a LISTEN on it. The thread sleeps in select() on the connection's socket and on a socket pair that
    `listen` and `close` write to. A lost connection is reopened and every channel LISTENed again; then every
    channel's generation is bumped, since notifications sent while it was away were lost: each waiting receiver
    claims once more.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._listening: set[str] = set()  # LISTENed on the connection open now
        self._closed = False
        self._thread: threading.Thread | None = None
        self._poke: socket.socket | None = None  # the write end of the dispatcher's socket pair

    def listen(self, channel: str, timeout_s: float) -> None:
        """Make sure `channel` is LISTENed on, waiting up to `timeout_s` for the server to confirm it."""
        with self._lock:
            state = self._channel(channel)
            if self._closed or channel in self._listening:
                return
            if self._thread is None:
                self._start()
            self._wake_dispatcher()
            state.changed.wait_for(lambda: self._closed or channel in self._listening, timeout_s)

    def generation(self, channel: str) -> int:
        with self._lock:
            return self._channel(channel).generation

    def wait(self, channel: str, seen: int, timeout_s: float) -> bool:
        """Block until `channel` has been notified since generation `seen` was read (True), or `timeout_s` passes
        (False). A notification heard before the call counts: it returns at once."""
        with self._lock:
            state = self._channel(channel)
            state.waiting += 1
            try:
                return state.changed.wait_for(lambda: state.generation != seen, timeout_s)
            finally:
                state.waiting -= 1

    def waiting(self, channel: str) -> int:
        with self._lock:
            state = self._channels.get(channel)  # asking about a channel must not LISTEN on it
            return state.waiting if state else 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for state in self._channels.values():
                state.changed.notify_all()  # a `listen` waiting for the LISTEN to be on stops waiting
            thread = self._thread
            self._wake_dispatcher()
        if thread is not None:
            thread.join()  # bounded: the thread blocks only in select() and in a connect with a timeout

    # -- the dispatcher's side ---------------------------------------------------------------------------------

    def _channel(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(threading.Condition(self._lock))
        return state

    def _start(self) -> None:
        woken, self._poke = socket.socketpair()
        woken.setblocking(False)
        self._poke.setblocking(False)
        self._thread = threading.Thread(target=self._dispatch, args=(woken,), name="queue-listener", daemon=True)
        self._thread.start()

    def _wake_dispatcher(self) -> None:
        if self._poke is not None:
            with suppress(BlockingIOError):  # the buffer is full of wake-ups already
                self._poke.send(b"\0")

    def _bump_all(self) -> None:
        for state in self._channels.values():
            state.generation += 1
            state.changed.notify_all()

    def _dispatch(self, woken: socket.socket) -> None:
        conn: psycopg.Connection[Any] | None = None
        fd = -1  # the connection's socket as registered: libpq closes it when the connection is lost
        selector = selectors.DefaultSelector()
        selector.register(woken, selectors.EVENT_READ)
        retry_s = _RECONNECT_S
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    pending = sorted(set(self._channels) - self._listening)
                try:
                    reconnected = conn is None
                    if conn is None:
                        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
                        fd = conn.fileno()
                        selector.register(fd, selectors.EVENT_READ)
                    for channel in pending:
                        conn.execute(sql.SQL(Q.listen).format(channel=sql.Identifier(channel)))
                    with self._lock:
                        self._listening.update(pending)
                        if reconnected:
                            self._bump_all()
                        else:
                            for channel in pending:
                                self._channels[channel].changed.notify_all()
                    # Also yields what arrived with a LISTEN's answer, which select() would not report.
                    for note in conn.notifies(timeout=0):
                        with self._lock:
                            state = self._channels.get(note.channel)
                            if state is not None:
                                state.generation += 1
                                state.changed.notify_all()
                    retry_s = _RECONNECT_S
                except Exception:
                    logger.warning("queue listener connection failed or lost, reconnecting", exc_info=True,
                                   extra={"retry_s": retry_s})
                    if conn is not None:
                        selector.unregister(fd)
                        conn.close()
                        conn = None
                    with self._lock:
                        self._listening.clear()
                    selector.select(retry_s)  # only the socket pair is registered now: close() cuts it short
                    retry_s = min(retry_s * 2, _RECONNECT_MAX_S)
                    _drain(woken)
                    continue
                selector.select()
                _drain(woken)
        finally:
            if conn is not None:
                conn.close()
            selector.close()
            woken.close()
            with self._lock:
                if self._poke is not None:
                    self._poke.close()
                    self._poke = None
                self._listening.clear()


def _drain(woken: socket.socket) -> None:
    with suppress(BlockingIOError):
        while woken.recv(4096):
            pass
