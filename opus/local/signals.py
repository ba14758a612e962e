"""Waiting for SIGINT/SIGTERM so that a long-running command can shut down cleanly."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def wait_for_shutdown(stop: threading.Event | None = None) -> None:
    """Block until SIGINT or SIGTERM (or `stop` is set); the caller then stops its consumers."""
    event = stop or threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not event.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
