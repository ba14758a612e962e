"""Request limits: token buckets kept in this process (`RateLimiter`), and per-credential buckets shared by every
API process through PostgreSQL (`SharedRateLimiter`).

The local buckets limit failed authentications per client address: they must cost nothing, since their point is
to spare the database. The shared buckets hold the per-credential limit across instances; each process leases a
few tokens at a time, so a lease costs one round trip per `lease` requests rather than one per request, and no
more tokens are ever granted than the shared bucket holds (a process's unused lease is at most `lease - 1`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from opus.db.pool import Database
from opus.db.queries import Queries

Q = Queries("api_limits")
WINDOW_S = 60
# A lease is about one second of the allowed rate, at most this many tokens: small enough that the tokens
# stranded in idle processes do not matter, large enough that a busy process leases a few times a second.
MAX_LEASE = 100


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

    def blocked(self, credential: str) -> Decision:
        """Whether `credential` has no token left, without taking one (allowed=True: not blocked)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(credential)
            if bucket is None:
                return Decision(True, 0, self.per_minute)
            tokens = min(float(self.per_minute), bucket.tokens + max(0.0, now - bucket.updated) * self._rate)
            if tokens >= 1.0:
                return Decision(True, 0, int(tokens))
            return Decision(False, max(1, math.ceil((1.0 - tokens) / self._rate)), 0)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self._IDLE_S:
            return
        self._last_sweep = now
        stale = [k for k, b in self._buckets.items() if now - b.updated > self._IDLE_S]
        for key in stale:
            del self._buckets[key]


@dataclass(frozen=True, slots=True)
class Quota:
    """What the shared bucket said: allowed or not, an estimate of what is left, and when to come back."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int = 0

    def headers(self) -> dict[str, str]:
        """The `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers (structured)."""
        out = {"RateLimit-Policy": f'"credential";q={self.limit};w={WINDOW_S}',
               "RateLimit": f'"credential";r={self.remaining};t={self.reset_s}'}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_s)
        return out


@dataclass(slots=True)
class _Lease:
    tokens: int
    shared_left: float
    used_at: float


class SharedRateLimiter:
    """`per_minute` requests per credential across every process on the database, bursts up to the same number."""

    def __init__(self, db: Database, per_minute: int, clock: Callable[[], datetime]) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.lease = min(MAX_LEASE, max(1, per_minute // WINDOW_S))
        self._rate = per_minute / WINDOW_S
        self._db = db
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._last_prune = float("-inf")

    def take(self, credential: str) -> Quota:
        """One request for `credential`: from this process's lease, or from a new lease of the shared bucket."""
        now = self._clock()
        stamp = now.timestamp()
        quota = self.take_leased(credential)
        if quota is not None:
            return quota
        leased, shared_left = self._lease(credential, now)
        with self._lock:
            self._sweep(stamp)
            held = self._leases.setdefault(credential, _Lease(0, shared_left, stamp))
            held.tokens += leased
            held.shared_left, held.used_at = shared_left, stamp
            if held.tokens > 0:
                held.tokens -= 1
                return self._quota(True, held.tokens + shared_left)
        wait = max(1, math.ceil((1.0 - shared_left) / self._rate))
        return self._quota(False, 0, retry_after_s=wait, shared_left=shared_left)

    def take_leased(self, credential: str) -> Quota | None:
        """One request from this process's lease, without I/O; None when the lease is spent (ask `take`)."""
        stamp = self._clock().timestamp()
        with self._lock:
            held = self._leases.get(credential)
            if held is None or held.tokens <= 0:
                return None
            held.tokens -= 1
            held.used_at = stamp
            return self._quota(True, held.tokens + held.shared_left)

    def _lease(self, credential: str, now: datetime) -> tuple[int, float]:
        with self._db.transaction() as conn:
            if now.timestamp() - self._last_prune > 10 * WINDOW_S:
                self._last_prune = now.timestamp()
                conn.execute(Q.prune_buckets, {"before": now - timedelta(seconds=2 * WINDOW_S)})
            row = conn.execute(Q.lease_tokens, {
                "credential": credential, "capacity": self.per_minute, "rate": self._rate, "want": self.lease,
                "now": now,
            }).fetchone()
        assert row is not None
        return int(row["leased"]), float(row["tokens"])

    def _quota(self, allowed: bool, remaining: float, *, retry_after_s: int = 0,
               shared_left: float | None = None) -> Quota:
        left = remaining if shared_left is None else shared_left
        reset = max(0, math.ceil((self.per_minute - left) / self._rate))
        return Quota(allowed, self.per_minute, int(remaining), reset, retry_after_s)

    def _sweep(self, now: float) -> None:
        # Leases idle for a whole window are dropped (their few tokens with them) to bound memory.
        if len(self._leases) < 1_000:
            return
        for key in [k for k, lease in self._leases.items() if now - lease.used_at > WINDOW_S]:
            del self._leases[key]
