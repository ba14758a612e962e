"""Fault injection: the failures nivoda-api.md says production shows (429, 5xx, slow answers, short pages).

Random faults come from a seeded generator so a failing test can be replayed; `fail_next` is a queue of
exact HTTP statuses for tests that need a precise sequence.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FaultSettings:
    rate_429: float = 0.0
    rate_500: float = 0.0
    latency_ms: int = 0
    short_page_rate: float = 0.0
    fail_next: list[int] = field(default_factory=list)


class Faults:
    """Thread-safe fault state shared by the HTTP layer and the resolvers."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._settings = FaultSettings()

    def configure(
        self,
        *,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        latency_ms: int = 0,
        short_page_rate: float = 0.0,
        fail_next: list[int] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the whole configuration (omitted settings go back to "no fault"); returns it."""
        rates = {"rate_429": rate_429, "rate_500": rate_500, "short_page_rate": short_page_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        statuses = list(fail_next or [])
        if any(not isinstance(s, int) or isinstance(s, bool) or not 400 <= s <= 599 for s in statuses):
            raise ValueError("fail_next must list HTTP error statuses (400-599)")
        with self._lock:
            self._settings = FaultSettings(rate_429, rate_500, latency_ms, short_page_rate, statuses)
            if seed is not None:
                self._rng.seed(seed)
            return asdict(self._settings)

    def reset(self) -> None:
        self.configure()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self._settings)

    def next_failure(self) -> int | None:
        """The HTTP status to fail this request with, or None to serve it."""
        with self._lock:
            s = self._settings
            if s.fail_next:
                return s.fail_next.pop(0)
            if s.rate_429 and self._rng.random() < s.rate_429:
                return 429
            if s.rate_500 and self._rng.random() < s.rate_500:
                return 500
            return None

    def latency_s(self) -> float:
        return self._settings.latency_ms / 1000

    def page_length(self, full: int, more_after: bool) -> int:
        """How many of a `full`-item page to return. A short page is only served mid-range and never
        empty (an empty page means "end of range"), and it only truncates: the next offset, advanced
        by what the client received, starts at the first item withheld, so nothing is skipped."""
        with self._lock:
            rate = self._settings.short_page_rate
            if not rate or full < 2 or not more_after or self._rng.random() >= rate:
                return full
            return self._rng.randint(1, full - 1)
