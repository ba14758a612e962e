"""Per-credential request limits: one token bucket per credential, kept in this process.

Each process (each uvicorn worker, each Azure Functions instance) limits on its own, so the effective limit
across N instances is N times the setting. That is acceptable for protecting the database from one noisy
client; a hard global quota would need a shared store and a round trip per request.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    remaining: int = 0


class RateLimiter:
    """`per_minute` requests per credential, with bursts up to the same number (a full bucket)."""

    # Buckets of credentials not seen for this long are full again anyway: dropping them bounds memory.
    _IDLE_S = 120.0

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def check(self, credential: str) -> Decision:
        """Take one token for `credential`, or say how long until one is available."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            bucket = self._buckets.get(credential)
            if bucket is None:
                bucket = self._buckets[credential] = _Bucket(float(self.per_minute), now)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + elapsed * self._rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(True, 0, int(bucket.tokens))
            wait = (1.0 - bucket.tokens) / self._rate
            return Decision(False, max(1, math.ceil(wait)), 0)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self._IDLE_S:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated > self._IDLE_S]
        for key in stale:
            del self._buckets[key]
