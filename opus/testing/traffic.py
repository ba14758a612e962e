"""Reading a client's request rate from the sandbox's side, where the figure has jitter in it.

The shared limiter spaces its slots exactly (its arithmetic is tested on a stepped clock). What the sandbox
records is when each request was admitted, and a sandbox thread that shares a busy process, or a busy
machine, admits requests late and back to back after every stall: one 100 ms stall at 25 requests/s puts two
or three more into some sliding second. A sustained window lets those bunches even out, so the limit is held
to within a few requests over seconds, and to a quarter of it in any one second, where a limiter that some
requests bypass, or one bucket per process, would send twice the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUSTAINED_WINDOW_S = 5
STALL_ALLOWANCE = 3  # requests one stall of about 100 ms can bunch into a window
ONE_SECOND_TOLERANCE = 1.25


def busiest_window(per_second: Mapping[str, int], seconds: int) -> int:
    """The most requests admitted in any `seconds` consecutive calendar seconds."""
    counts = {int(second): n for second, n in per_second.items()}
    if not counts:
        return 0
    return max(sum(counts.get(start + i, 0) for i in range(seconds)) for start in counts)


def assert_rate_held(requests: Mapping[str, Any], limit_per_s: float) -> None:
    """The sandbox's `/admin/stats` requests show a client fleet held to `limit_per_s`, jitter allowed for."""
    per_second: Mapping[str, int] = requests["per_second"]
    window = min(SUSTAINED_WINDOW_S, max(1, len(per_second)))
    sustained = busiest_window(per_second, window)
    assert sustained <= limit_per_s * window + STALL_ALLOWANCE, (
        f"{sustained} requests in {window} s against a limit of {limit_per_s}/s: {dict(per_second)}")
    peak = requests["max_per_second"]
    assert peak <= limit_per_s * ONE_SECOND_TOLERANCE, (
        f"{peak} requests in one sliding second against a limit of {limit_per_s}/s")
