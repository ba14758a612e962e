"""Rate limiting of Nivoda requests: the `RateLimiter` port and its in-process token bucket.

All of Opus shares one limit (`NIVODA_RATE_LIMIT_PER_S`): the runtimes hand the client the bucket held in
PostgreSQL (`postgres_ratelimit.PostgresRateLimiter`). The in-process `TokenBucket` is what a client without a
database uses (its unit tests, a one-off script), and the same arithmetic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    """Spaces requests; `pause` holds back every request of every sharer (a 429 from Nivoda)."""

    def acquire(self) -> None:
        """Block until the caller may make one request."""
        ...

    def pause(self, seconds: float) -> None:
        """No request starts within `seconds` from now (an earlier, longer pause stands)."""
        ...


class TokenBucket:
    """Spaces acquisitions `1 / rate_per_s` apart, allowing up to `burst` back to back after a quiet spell.

    Each caller reserves its slot under the lock and sleeps outside it, so waiting threads do not serialise
    behind a sleeper and the order of reservations is the order of service.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = rate_per_s
        self._interval = 1.0 / rate_per_s
        self._burst_window = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()
        self._paused_until = float("-inf")

    def reserve(self) -> float:
        """Take the next slot and return how long the caller must wait before using it (seconds)."""
        with self._lock:
            now = self._clock()
            # A bucket that has been idle holds at most `burst` tokens: never start earlier than that allows.
            slot = max(self._next_free, now - self._burst_window, self._paused_until)
            self._next_free = slot + self._interval
            return max(0.0, slot - now)

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
