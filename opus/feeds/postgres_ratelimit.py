"""The one Nivoda rate limit of all of Opus: a token bucket held in PostgreSQL (`rate_limit_buckets`).

Every request reserves the bucket's next slot with one `UPDATE ... RETURNING` and sleeps until it, outside any
transaction. The row lock queues concurrent reservations, so reservations are served in the order they were
made, across threads, processes and Azure instances alike; nothing is leased, so a process that dies holds
nothing beyond the few slots its threads had reserved. A 429 stores a pause in the same row, which every later
reservation honours: one throttled request slows the whole fleet instead of each worker finding out alone.

One round trip per request is a millisecond against requests of a second or more, so slots are not batched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

import psycopg

from opus.db.pool import Database
from opus.db.queries import Queries
from opus.feeds.ratelimit import TokenBucket

logger = logging.getLogger(__name__)
RATELIMIT = Queries("ratelimit")

NIVODA_BUCKET = "nivoda"
LATE_TOLERANCE_S = 0.05  # how far past its slot a woken thread may still send (scheduler jitter)
MAX_LATE_RESERVATIONS = 5


class PostgresRateLimiter:
    """`RateLimiter` over one row of `rate_limit_buckets`. Thread-safe: each call uses its own connection.

    `clock` replaces the database's notion of now (tests step it); by default the database's clock is the one
    clock every instance agrees on. If the database cannot be reached the request is spaced by an in-process
    bucket at the same rate instead of failing: the page could not be stored either, so the fleet-wide limit
    matters little then, and the request's own error is the one worth reporting.
    """

    def __init__(
        self, db: Database, rate_per_s: float, *, name: str = NIVODA_BUCKET, burst: int = 1,
        clock: Callable[[], datetime] | None = None, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = rate_per_s
        self._db = db
        self._name = name
        self._interval_s = 1.0 / rate_per_s
        self._burst_s = (burst - 1) * self._interval_s
        self._clock = clock
        self._sleep = sleep
        self._fallback = TokenBucket(rate_per_s, burst=burst)

    def reserve(self) -> float:
        """Take the next slot of the shared bucket; the seconds to wait before using it."""
        params = {"name": self._name, "now": self._now(), "interval_s": self._interval_s, "burst_s": self._burst_s}
        for _ in range(2):
            with self._db.transaction() as conn:
                row = conn.execute(RATELIMIT.reserve_slot, params).fetchone()
                if row is not None:
                    return max(0.0, float(row["wait_s"]))
                # The row is missing (a fresh or emptied database): create it, then reserve again.
                conn.execute(RATELIMIT.ensure_bucket, {"name": self._name})
        raise RuntimeError(f"rate limit bucket {self._name!r} cannot be created")  # pragma: no cover

    def acquire(self) -> None:
        # A thread that wakes well after its slot (a starved CPU, a long GC pause) takes a new slot instead of
        # sending late: late senders woken together would otherwise go out back to back, above the limit.
        for _ in range(MAX_LATE_RESERVATIONS):
            try:
                wait = self.reserve()
            except psycopg.Error:
                logger.warning("shared rate limit unavailable; spacing this request in-process", exc_info=True)
                wait = self._fallback.reserve()
            slot = time.monotonic() + wait
            if wait > 0:
                self._sleep(wait)
            if self._clock is not None or time.monotonic() - slot <= self._interval_s + LATE_TOLERANCE_S:
                return
        logger.warning("woke late for every reserved slot; sending anyway", extra={"bucket": self._name})

    def pause(self, seconds: float) -> None:
        params = {"name": self._name, "now": self._now(), "seconds": max(0.0, seconds)}
        try:
            with self._db.transaction() as conn:
                if not conn.execute(RATELIMIT.pause_bucket, params).rowcount:
                    conn.execute(RATELIMIT.ensure_bucket, {"name": self._name})
                    conn.execute(RATELIMIT.pause_bucket, params)
        except psycopg.Error:
            logger.warning("shared rate limit unavailable; pausing this process only", exc_info=True)
            self._fallback.pause(seconds)
            return
        logger.info("nivoda requests paused for the whole fleet", extra={"pause_s": round(seconds, 3)})

    def _now(self) -> datetime | None:
        return self._clock() if self._clock is not None else None
