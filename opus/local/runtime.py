"""The composition root for one machine: database (embedded if none is configured), local queue, coordinator, feed.

`LocalRuntime` is used by `opus run`, `opus worker`, `opus serve` and the end-to-end tests alike. Whenever it
consumes, it also runs housekeeping (overdue and abandoned runs, stalled partitions and consolidations, watermark
publishing, queue pruning), so every runtime recovers from crashes on its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType

from opus.adapters.email_alerts import ResendNotifier
from opus.adapters.postgres_coordinator import PostgresCoordinator
from opus.adapters.postgres_queue import PostgresQueue
from opus.adapters.postgres_state import PostgresAlerts, PostgresWatermarkStore, SystemClock
from opus.config import Settings
from opus.db.connect import open_database
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.local.consumers import QueueConsumer
from opus.pipeline.consolidator import handle_consolidate
from opus.pipeline.control import RunControl
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.housekeeping import run_housekeeping
from opus.pipeline.outcomes import PartitionFinished
from opus.pipeline.preparers import preparer_for
from opus.pipeline.worker import handle_work_item
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE, Clock, Feed

logger = logging.getLogger(__name__)


class LocalRuntime:
    """Owns the process's long-lived clients; closing it stops consumers and releases everything."""

    def __init__(
        self, settings: Settings, *, db: Database | None = None, feed: Feed | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._consumers: list[QueueConsumer] = []
        self._housekeeper: Housekeeper | None = None
        try:
            self.db = db or open_database(settings, self._stack)
            if feed is None:
                client = NivodaClient.from_settings(settings, db=self.db)  # the rate limit all of Opus shares
                self._stack.callback(client.close)
                feed = client
            self.queue = PostgresQueue(self.db, max_deliveries=settings.queue_max_deliveries)
            self._stack.callback(self.queue.close)
            # One machine: consolidation's pure Python spreads over every core (the pool starts on first use).
            processes = settings.consolidator_processes
            preparer = preparer_for((os.cpu_count() or 1) if processes is None else processes)
            self._stack.callback(preparer.close)
            self.deps = PipelineDeps(
                db=self.db, feed=feed, queue=self.queue, watermarks=PostgresWatermarkStore(self.db),
                alerts=PostgresAlerts(self.db, self._notifier()), clock=clock or SystemClock(), settings=settings,
                preparer=preparer,
            )
            self.coordinator = PostgresCoordinator(self.deps)
            self.control = RunControl(self.deps, self.coordinator)
        except BaseException:
            self._stack.close()
            raise

    def _notifier(self) -> ResendNotifier | None:
        s = self.settings
        if s.resend_api_key is None or not s.alert_email_to or not s.alert_email_from:
            return None
        notifier = ResendNotifier(
            s.resend_api_key.get_secret_value(), s.alert_email_from,
            [a.strip() for a in s.alert_email_to.split(",") if a.strip()], endpoint=s.resend_endpoint,
        )
        self._stack.callback(notifier.close)
        return notifier

    def announce(self, finished: PartitionFinished) -> None:
        self.coordinator.partition_finished(finished.run_id, finished.partition, finished.ok)

    def start_consumers(self, *, workers: int, consolidators: int = 1, housekeeping: bool = True) -> None:
        """Start page workers and consolidation consumers as threads of this process, and housekeeping."""
        visibility = self.settings.queue_visibility_timeout_s
        deps = self.deps
        if workers:
            self._consumers.append(QueueConsumer(
                self.queue, WORK_QUEUE, lambda body: handle_work_item(deps, body), concurrency=workers,
                visibility_timeout_s=visibility, name="worker", on_finished=self.announce,
            ))
        if consolidators:
            self._consumers.append(QueueConsumer(
                self.queue, CONSOLIDATE_QUEUE, lambda body: handle_consolidate(deps, body),
                concurrency=consolidators, visibility_timeout_s=visibility, name="consolidator",
            ))
        for consumer in self._consumers:
            consumer.start()
        if housekeeping and self._housekeeper is None:
            self._housekeeper = Housekeeper([lambda: run_housekeeping(deps)], self.settings.housekeeping_interval_s)
            self._housekeeper.start()

    def stop_consumers(self, timeout_s: float = 60.0) -> None:
        """Stop receiving and let in-flight messages finish; unfinished ones stay queued."""
        if self._housekeeper is not None:
            self._housekeeper.stop()
            self._housekeeper = None
        for consumer in self._consumers:
            consumer.request_stop()  # all at once, so the timeouts do not add up
        for consumer in self._consumers:
            consumer.stop(timeout_s)
        self._consumers.clear()

    def close(self) -> None:
        self.stop_consumers()
        self._stack.close()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Housekeeper:
    """A thread running chores every `interval_s`; one failing chore never stops the others or the thread."""

    def __init__(self, chores: list[Callable[[], object]], interval_s: float) -> None:
        self._chores = chores
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def run_once(self) -> None:
        for chore in self._chores:
            try:
                chore()
            except Exception:  # a database or feed outage must not end housekeeping
                logger.exception("housekeeping chore failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self._interval_s)
