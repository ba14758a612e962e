"""Traffic as the server sees it: request latency, load-based throttling and what was served when.

The throttle counts the requests it admitted in a sliding one-second window across every client, as a
gateway in front of the real API would; the same record answers "how many requests per second did the
sandbox serve", so a test can check a client's rate limit from the server's side.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from opus.sandbox.config import Latency

WINDOW_S = 1.0
_SECONDS_KEPT = 3600  # per-second counts older than an hour are forgotten


class LatencySampler:
    """Seeded log-normal latencies: the same seed gives the same sequence of delays."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(f"opus-sandbox-latency:{seed}")

    def sample_s(self, latency: Latency) -> float:
        with self._lock:
            z = self._rng.gauss(0.0, 1.0)
        return min(latency.median_ms * math.exp(latency.sigma * z), latency.cap_ms) / 1000


class Traffic:
    """Admission against a requests-per-second limit, and counts of admitted requests per second."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[float] = deque()  # admission instants within the last second
        self._per_second: OrderedDict[int, int] = OrderedDict()
        self._served = 0
        self._throttled = 0
        self._max_in_window = 0

    def admit(self, limit_rps: float | None) -> float | None:
        """None when the request is admitted (and counted), else the seconds until a slot frees up."""
        with self._lock:
            now = self._clock()
            while self._window and self._window[0] <= now - WINDOW_S:
                self._window.popleft()
            if limit_rps is not None and len(self._window) >= limit_rps:
                self._throttled += 1
                return max(0.0, self._window[0] + WINDOW_S - now)
            self._window.append(now)
            self._served += 1
            self._max_in_window = max(self._max_in_window, len(self._window))
            second = int(now)
            self._per_second[second] = self._per_second.get(second, 0) + 1
            while len(self._per_second) > _SECONDS_KEPT:
                self._per_second.popitem(last=False)
            return None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "served": self._served,
                "throttled": self._throttled,
                # the most admitted in any sliding one-second window, not just within a calendar second
                "max_per_second": self._max_in_window,
                "per_second": {str(s): n for s, n in self._per_second.items()},
            }

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._per_second.clear()
            self._served = self._throttled = self._max_in_window = 0


def retry_after_header(wait_s: float) -> str:
    """Retry-After in whole seconds, never 0 (a client reading 0 would retry at once)."""
    return str(max(1, math.ceil(wait_s)))
