"""The nightly schedule, in-process: what the Azure timer trigger does, for `opus serve`.

A thread sleeps until the next cron time (UTC), then starts the scheduled run. The runtime's housekeeping
(running beside the consumers) keeps a stuck run from blocking the next night's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from croniter import croniter

from opus.pipeline.deps import PipelineDeps
from opus.pipeline.scheduler import start_scheduled_run
from opus.ports import RunCoordinator

logger = logging.getLogger(__name__)

HOUSEKEEPING_S = 60.0


def next_fire(cron: str, after: datetime) -> datetime:
    fire: datetime = croniter(cron, after).get_next(datetime)
    return fire


class NightlySchedule:
    """`housekeeping` callables run about once a minute between firings."""

    def __init__(self, deps: PipelineDeps, coordinator: RunCoordinator, cron: str, *,
                 housekeeping: Sequence[Callable[[], object]] = ()) -> None:
        self._deps = deps
        self._coordinator = coordinator
        self._cron = cron
        self._housekeeping = list(housekeeping)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedule", daemon=True)
        self.next_at = next_fire(cron, deps.clock.now())

    def start(self) -> None:
        logger.info("schedule started", extra={"cron": self._cron, "next_at": self.next_at.isoformat()})
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def fire(self) -> list[str]:
        """Start the scheduled run of every enabled feed now; the ids of those started (none already active)."""
        return start_scheduled_run(self._deps, self._coordinator)

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self._deps.clock.now()
            if now >= self.next_at:
                try:
                    self.fire()
                except Exception:  # a database or feed outage must not end the schedule
                    logger.exception("scheduled run could not start")
                self.next_at = next_fire(self._cron, now)
                continue
            for task in self._housekeeping:
                try:
                    task()
                except Exception:  # one failing chore must not stop the schedule or the others
                    logger.exception("housekeeping failed")
            self._stop.wait(min(HOUSEKEEPING_S, (self.next_at - now).total_seconds()))
