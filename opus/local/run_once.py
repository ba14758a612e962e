"""`opus run`: whole runs in this process (one per feed, side by side), with progress, ending in summaries."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opus.db.queries import Queries
from opus.domain.models import FeedConfig, RunStatus, RunType
from opus.errors import ConflictError
from opus.feeds.catalog import default_feed
from opus.local.runtime import LocalRuntime
from opus.pipeline.runs import ACTIVE, active_run, expire_overdue_runs, get_run
from opus.pipeline.scheduler import PlanningTaken, plan_run, schedule_run

logger = logging.getLogger(__name__)
RUNS = Queries("runs")


@dataclass(frozen=True, slots=True)
class Progress:
    status: str
    partitions_done: int
    partitions: int
    pages: int
    raw_rows: int
    consolidated: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.raw_rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_once(
    runtime: LocalRuntime, run_type: RunType, *, workers: int, on_progress: Callable[[Progress], None] | None = None,
    poll_s: float = 0.5, feed: FeedConfig | None = None,
) -> dict[str, Any]:
    """Plan a run of one feed (default: the first enabled one), or resume its interrupted one, work it in this
    process, and return its summary."""
    feed = feed or default_feed(runtime.settings.feeds)
    run_id = start_or_resume(runtime, run_type, feed)
    return follow_run(runtime, run_id, workers=workers, on_progress=on_progress, poll_s=poll_s)


def run_feeds(
    runtime: LocalRuntime, run_type: RunType, feeds: Sequence[FeedConfig], *, workers: int,
    on_progress: Callable[[Progress], None] | None = None, poll_s: float = 0.5,
) -> list[dict[str, Any]]:
    """One run per feed, planned side by side and worked by one set of consumers; their summaries, in order.

    The consumers start first, so one feed's pages are fetched while another feed is still being planned: the
    shared rate limit, not the order of planning, decides what goes out.
    """
    started = time.monotonic()
    runtime.start_consumers(workers=workers, consolidators=len(feeds))
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(feeds)), thread_name_prefix="plan") as pool:
            run_ids = list(pool.map(lambda f: start_or_resume(runtime, run_type, f), feeds))
        _wait_for(runtime, run_ids, started, on_progress, poll_s)
    finally:
        runtime.stop_consumers()
    return [summary(runtime, run_id) for run_id in run_ids]


def start_or_resume(runtime: LocalRuntime, run_type: RunType, feed: FeedConfig | None = None) -> str:
    """A new run of the feed, or its active run of the same type, resumed: a run whose planner died is planned here.

    A live planner elsewhere is waited for (at most until its heartbeat would go stale, when this process takes
    the planning over). Another active run type is refused with what to do about it: resuming a run of the other
    type silently would surprise, and cancelling one is the operator's call.
    """
    deps = runtime.deps
    feed = feed or default_feed(runtime.settings.feeds)
    expire_overdue_runs(deps)
    give_up_at = time.monotonic() + deps.settings.planning_timeout_s + 10
    while True:
        active = active_run(deps, feed.name)
        if active is None:
            return schedule_run(deps, runtime.coordinator, run_type, trigger="cli", feed=feed).run_id
        run_id, kind, status = str(active["run_id"]), str(active["run_type"]), str(active["status"])
        if kind != run_type.value:
            raise ConflictError(
                f"run {run_id} ({kind}, {status}) of feed {feed.name!r} is active: `opus run --{kind}` "
                f"resumes it, `opus runs cancel {run_id}` cancels it"
            )
        if status != RunStatus.PLANNING:
            logger.info("resuming the active run", extra={"run_id": run_id, "status": status})
            return run_id
        try:
            plan_run(deps, runtime.coordinator, run_id)  # its planner died: plan it here
            return run_id
        except PlanningTaken:
            if time.monotonic() > give_up_at:
                return run_id
            time.sleep(1.0)  # a live planner owns it: wait for its plan, or for its heartbeat to lapse


def follow_run(
    runtime: LocalRuntime, run_id: str, *, workers: int, on_progress: Callable[[Progress], None] | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Work an already scheduled run in this process until it ends; return its summary."""
    started = time.monotonic()
    runtime.start_consumers(workers=workers, consolidators=1)
    try:
        _wait_for(runtime, [run_id], started, on_progress, poll_s)
    finally:
        runtime.stop_consumers()
    return summary(runtime, run_id)


def _wait_for(
    runtime: LocalRuntime, run_ids: Sequence[str], started: float,
    on_progress: Callable[[Progress], None] | None, poll_s: float,
) -> None:
    while True:
        progress = _combined([_progress(runtime, run_id, started) for run_id in run_ids])
        if on_progress:
            on_progress(progress)
        if progress.status not in ACTIVE:
            return
        time.sleep(poll_s)


def _combined(progresses: Sequence[Progress]) -> Progress:
    """Several runs as one line: the totals, and the status of the least advanced run still active."""
    active = [p.status for p in progresses if p.status in ACTIVE]
    return Progress(
        status=min(active, key=[str(a) for a in ACTIVE].index) if active else progresses[-1].status,
        partitions_done=sum(p.partitions_done for p in progresses), partitions=sum(p.partitions for p in progresses),
        pages=sum(p.pages for p in progresses), raw_rows=sum(p.raw_rows for p in progresses),
        consolidated=sum(p.consolidated for p in progresses), elapsed_s=max(p.elapsed_s for p in progresses),
    )


def summary(runtime: LocalRuntime, run_id: str) -> dict[str, Any]:
    run = get_run(runtime.deps, run_id) or {}
    with runtime.db.connection() as conn:
        totals = conn.execute(RUNS.run_totals, {"run_id": run_id}).fetchone() or {}
    watermark = run.get("watermark")
    return {
        "run_id": run_id,
        "feed": run.get("feed"),
        "status": run.get("status"),
        "type": run.get("run_type"),
        "partitions": totals.get("partitions", 0),
        "pages": totals.get("pages", 0),
        "raw_rows": totals.get("rows_fetched", 0),
        "consolidated": run.get("consolidated", 0),
        "deleted": run.get("deleted", 0),
        "unconfirmed": run.get("unconfirmed", 0),
        "errors": run.get("errors", 0),
        "watermark": watermark.isoformat() if watermark else None,
        "failure_reason": run.get("failure_reason"),
    }


def _progress(runtime: LocalRuntime, run_id: str, started: float) -> Progress:
    with runtime.db.connection() as conn:
        run = conn.execute(RUNS.get_run, {"run_id": run_id}).fetchone() or {}
        totals = conn.execute(RUNS.run_totals, {"run_id": run_id}).fetchone() or {}
    return Progress(
        status=str(run.get("status", RunStatus.FAILED)), partitions_done=totals.get("partitions_done", 0),
        partitions=totals.get("partitions", 0), pages=totals.get("pages", 0),
        raw_rows=totals.get("rows_fetched", 0), consolidated=run.get("consolidated", 0),
        elapsed_s=time.monotonic() - started,
    )


class PlainProgress:
    """A line every few seconds, for logs and pipes (stderr, so stdout stays the summary)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self._every = every_s
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        if p.elapsed_s - self._last < self._every and p.status in ACTIVE:
            return
        self._last = p.elapsed_s
        print(
            f"[{p.elapsed_s:6.1f}s] {p.status:<13} partitions {p.partitions_done}/{p.partitions}  "
            f"pages {p.pages}  raw rows {p.raw_rows}  consolidated {p.consolidated}  {p.rate:,.0f} rows/s",
            file=sys.stderr, flush=True,
        )
