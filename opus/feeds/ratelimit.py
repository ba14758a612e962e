"""A thread-safe token bucket: at most `rate_per_s` acquisitions per second across all threads sharing it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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

    def reserve(self) -> float:
        """Take the next slot and return how long the caller must wait before using it (seconds)."""
        with self._lock:
            now = self._clock()
            # A bucket that has been idle holds at most `burst` tokens: never start earlier than that allows.
            slot = max(self._next_free, now - self._burst_window)
            self._next_free = slot + self._interval
            return max(0.0, slot - now)

    def acquire(self) -> None:
        """Block until the caller may make one request."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
