"""The single-machine runtime for queue handlers: worker threads over a PostgresQueue.

Each worker receives one message, calls `handler(body)` and applies the `Outcome` it returns, the way the Service
Bus trigger does on Azure:
- the partitions it saw finish are announced first (`on_finished`), so a crash before the message is completed
  repeats the announcement instead of losing it;
- DONE -> complete; RETRY -> send the scheduled copy, then complete; GIVE_UP -> dead-letter with the reason;
- a raised TransientError (the database blinked) -> abandon with exponential backoff; PermanentError ->
  dead-letter at once; anything else -> abandon at once and log the traceback; the queue dead-letters it after
  max deliveries.

Locks are short (`QUEUE_VISIBILITY_TIMEOUT_S`) and renewed every third of their length while the handler runs, so a
consumer that dies loses its messages to the others within one lock's time. Nothing is lost on stop: a worker
finishes its in-flight handler; a message it received while stopping is released unprocessed (its delivery uncounted).
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from opus.adapters.postgres_queue import LockLostError, PostgresQueue, ReceivedMessage
from opus.errors import PermanentError, TransientError
from opus.pipeline.outcomes import Disposition, Outcome, PartitionFinished
from opus.ports import JSON

logger = logging.getLogger(__name__)

Handler = Callable[[JSON], Outcome]
OnFinished = Callable[[PartitionFinished], None]

# After a receive fails (database unreachable), wait this long before trying again, doubling up to the cap.
_RECEIVE_RETRY_S = 0.5
_RECEIVE_RETRY_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    processed: int  # handler returned and the message was completed
    failed: int  # handler raised (the message was abandoned or dead-lettered)
    dead_lettered: int  # of the failed, dead-lettered by a PermanentError
    in_flight: int  # handlers running now


class QueueConsumer:
    """`concurrency` threads consuming `queue_name`; `start()` once, `stop()` once."""

    def __init__(
        self,
        queue: PostgresQueue,
        queue_name: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        visibility_timeout_s: float = 300,
        wait_s: float = 1.0,
        name: str = "",
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        on_finished: OnFinished | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if visibility_timeout_s <= 0:
            raise ValueError(f"visibility_timeout_s must be positive, not {visibility_timeout_s}")
        self._queue = queue
        self.queue_name = queue_name
        self._handler = handler
        self._concurrency = concurrency
        self._visibility_timeout_s = visibility_timeout_s
        # The wait bounds how long stop() takes to notice while a worker waits for messages.
        self._wait_s = wait_s
        self.name = name or queue_name
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._on_finished = on_finished
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._renewer = _LockRenewer(queue, visibility_timeout_s, self.name)
        self._lock = threading.Lock()
        self._processed = self._failed = self._dead = self._in_flight = 0
        self._alive = 0

    def start(self) -> None:
        if self._threads:
            raise RuntimeError(f"consumer {self.name!r} was already started")
        self._renewer.start()
        self._alive = self._concurrency
        for i in range(self._concurrency):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()
        logger.info("consumer started", extra={"consumer": self.name, "queue": self.queue_name,
                                               "concurrency": self._concurrency})

    def request_stop(self) -> None:
        """Stop receiving without waiting: lets a runtime signal all its consumers before joining any."""
        self._stopping.set()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop receiving and wait for in-flight handlers; True if every worker finished within the timeout.

        A handler still running after the timeout keeps its lock renewed and settles its message when it ends.
        """
        self.request_stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        finished = not any(t.is_alive() for t in self._threads)
        logger.info("consumer stopped", extra={"consumer": self.name, "finished": finished})
        return finished

    def stats(self) -> ConsumerStats:
        with self._lock:
            return ConsumerStats(self._processed, self._failed, self._dead, self._in_flight)

    @property
    def processed(self) -> int:
        return self.stats().processed

    @property
    def failed(self) -> int:
        return self.stats().failed

    def __enter__(self) -> QueueConsumer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- worker ------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._receive_loop()
        finally:
            with self._lock:
                self._alive -= 1
                last = self._alive == 0
            # The last worker out stops the renewer, also when stop() gave up waiting for it.
            if last:
                self._renewer.stop()

    def _receive_loop(self) -> None:
        retry_s = _RECEIVE_RETRY_S
        while not self._stopping.is_set():
            try:
                messages = self._queue.receive(
                    self.queue_name, max_messages=1, visibility_timeout_s=self._visibility_timeout_s,
                    wait_s=self._wait_s,
                )
            except Exception:
                logger.exception("receive failed", extra={"consumer": self.name, "queue": self.queue_name})
                self._stopping.wait(retry_s)
                retry_s = min(retry_s * 2, _RECEIVE_RETRY_MAX_S)
                continue
            retry_s = _RECEIVE_RETRY_S
            for msg in messages:
                if self._stopping.is_set():
                    # Received while stopping: hand it straight back, uncounted, rather than start work stop()
                    # waits for. (Abandoning would count a delivery, and wake another stopping consumer to receive
                    # it again: with many threads, a message could be dead-lettered on the way out.)
                    self._settle(msg, self._queue.release)
                else:
                    self._process(msg)

    def _process(self, msg: ReceivedMessage) -> None:
        context = {"consumer": self.name, "queue": msg.queue, "message_id": msg.message_id,
                   "delivery_count": msg.delivery_count}
        with self._lock:
            self._in_flight += 1
        self._renewer.track(msg)
        settle: Callable[[ReceivedMessage], None]
        ok = False
        try:
            outcome = self._handler(msg.body)
            settle = self._settlement(msg, outcome)
        except TransientError as exc:
            delay = exc.retry_after if exc.retry_after is not None else self._backoff_s(msg.delivery_count)
            logger.warning("handler failed, will retry", extra={**context, "error": str(exc), "delay_s": delay})
            settle = partial(self._queue.abandon, delay_s=delay)
            self._count(failed=1)
        except PermanentError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("handler failed permanently", extra={**context, "error": reason})
            settle = partial(self._queue.dead_letter, reason=reason)
            self._count(failed=1, dead=1)
        except Exception:
            # A bug or an unclassified error: redeliver now; the queue's max deliveries bounds the loop.
            logger.exception("handler raised an unexpected error", extra=context)
            settle = self._queue.abandon
            self._count(failed=1)
        else:
            ok = outcome.disposition is not Disposition.GIVE_UP
            if not ok:
                self._count(failed=1, dead=1)
        finally:
            self._renewer.untrack(msg)
        settled = self._settle(msg, settle)
        with self._lock:
            self._in_flight -= 1
            if settled and ok:
                self._processed += 1

    def _settlement(self, msg: ReceivedMessage, outcome: Outcome) -> Callable[[ReceivedMessage], None]:
        """Announce what finished, then say how to settle; a failed announcement raises (the message comes back)."""
        if self._on_finished is not None:
            for finished in outcome.finished:
                self._on_finished(finished)
        if outcome.disposition is Disposition.GIVE_UP:
            reason = outcome.reason or "given up"
            logger.error("message given up", extra={"consumer": self.name, "message_id": msg.message_id,
                                                     "reason": reason})
            return partial(self._queue.dead_letter, reason=reason)
        if outcome.disposition is Disposition.RETRY and outcome.retry is not None:
            copy = outcome.retry
            self._queue.send(msg.queue, copy.body, message_id=copy.message_id, delay_s=copy.delay_s)
        return self._queue.complete

    def _settle(self, msg: ReceivedMessage, action: Callable[[ReceivedMessage], None]) -> bool:
        """Apply a settlement; a failure is logged, not raised: the message reappears when its lock expires."""
        context = {"consumer": self.name, "queue": msg.queue, "message_id": msg.message_id}
        try:
            action(msg)
        except LockLostError:
            logger.warning("lock lost before settling; the message will be delivered again", extra=context)
            return False
        except Exception:
            logger.exception("settling a message failed", extra=context)
            return False
        return True

    def _backoff_s(self, delivery_count: int) -> float:
        nominal = min(self._retry_max_s, self._retry_base_s * 2.0 ** max(0, delivery_count - 1))
        # A little jitter, only upwards, so that messages failing together do not all come back together.
        return nominal * (1 + 0.1 * random.random())

    def _count(self, *, failed: int = 0, dead: int = 0) -> None:
        with self._lock:
            self._failed += failed
            self._dead += dead


class _LockRenewer:
    """One thread per consumer renewing the lock of every message whose handler outlives a third of its lock."""

    def __init__(self, queue: PostgresQueue, visibility_timeout_s: float, name: str) -> None:
        self._queue = queue
        self._visibility_timeout_s = visibility_timeout_s
        self._name = name
        self._cond = threading.Condition()
        self._due: list[tuple[float, int]] = []  # (monotonic due time, message row id), a heap
        self._tracked: dict[int, ReceivedMessage] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-renew", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread; called by the last worker out, when nothing is tracked any more."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def track(self, msg: ReceivedMessage) -> None:
        with self._cond:
            self._tracked[msg.id] = msg
            heapq.heappush(self._due, (time.monotonic() + self._visibility_timeout_s / 3, msg.id))
            # Wake the thread only if its next deadline moved; mostly it did not (same delay for every message).
            if self._due[0][1] == msg.id:
                self._cond.notify()

    def untrack(self, msg: ReceivedMessage) -> None:
        with self._cond:
            if self._tracked.get(msg.id) is msg:
                del self._tracked[msg.id]
            # Entries are dropped lazily when due; with long locks and fast handlers they would pile up.
            if len(self._due) > 2 * len(self._tracked) + 64:
                self._due = [entry for entry in self._due if entry[1] in self._tracked]
                heapq.heapify(self._due)

    def _run(self) -> None:
        while True:
            with self._cond:
                msg = self._next_due()
                if msg is None:
                    return
            retry_in = self._renew(msg)
            with self._cond:
                if self._tracked.get(msg.id) is msg and retry_in is not None:
                    heapq.heappush(self._due, (time.monotonic() + retry_in, msg.id))

    def _next_due(self) -> ReceivedMessage | None:
        """Wait (holding the condition) until a tracked message is due; None once stopped."""
        while not self._stopping:
            # Entries of untracked messages are dropped lazily here, not searched for on untrack.
            while self._due and self._due[0][1] not in self._tracked:
                heapq.heappop(self._due)
            if not self._due:
                self._cond.wait()
                continue
            due, msg_id = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._cond.wait(wait)
                continue
            heapq.heappop(self._due)
            return self._tracked[msg_id]
        return None

    def _renew(self, msg: ReceivedMessage) -> float | None:
        """Renew one lock; the delay until the next renewal, or None to give up on this message."""
        context = {"consumer": self._name, "queue": msg.queue, "message_id": msg.message_id}
        try:
            self._queue.renew_lock(msg, self._visibility_timeout_s)
        except LockLostError:
            if self._is_tracked(msg):
                logger.warning("lock lost while the handler runs; it may be delivered twice", extra=context)
            return None
        except Exception:
            logger.exception("lock renewal failed; retrying", extra=context)
            # Try again well before the lock runs out.
            return self._visibility_timeout_s / 10
        return self._visibility_timeout_s / 3

    def _is_tracked(self, msg: ReceivedMessage) -> bool:
        with self._cond:
            return self._tracked.get(msg.id) is msg
