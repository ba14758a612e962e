"""Step 1 of a run: create it, scan the feed's density, store the partitions, enqueue one item each.

Planning can take minutes (hundreds of count calls, each up to 45 s in production). The planner owns the run
while it beats: a heartbeat thread refreshes `heartbeat_at`, and a run whose planner stopped beating is failed
by housekeeping or taken over (`plan_run` on it again), so a killed planner frees its feed within
`PLANNING_TIMEOUT_S`. The plan and its partitions are stored in one transaction, only by the owner; the
coordinator is started before the first message is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from opus.db.queries import Queries
from opus.domain.heatmap import build_partitions
from opus.domain.models import FeedConfig, FeedQuery, Partition, RunPlan, RunType, WorkItem
from opus.errors import ConflictError, FeedTransientError, OpusError
from opus.feeds.catalog import default_feed, enabled_feeds
from opus.pipeline.density import scan_density, target_bucket_for
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import (
    expire_overdue_runs,
    fail_abandoned_planning,
    fail_run,
    incremental_start,
    planning_stale_before,
)
from opus.ports import WORK_QUEUE, OutgoingMessage, RunCoordinator

logger = logging.getLogger(__name__)
# Between tries of a failed density count: the client has already backed off across its own retries.
COUNT_RETRY_S = 1.0
RUNS = Queries("runs")
FEEDS = Queries("feeds")


class PlanningTaken(ConflictError):
    """Another live planner owns this run's planning (or took it over from us)."""


def schedule_run(
    deps: PipelineDeps, coordinator: RunCoordinator, run_type: RunType, *, trigger: str = "cli",
    feed: FeedConfig | None = None,
) -> RunPlan:
    """Create and plan a run of one feed (default: the first enabled one) and enqueue its first page per
    partition. ConflictError if a run of that feed is active; runs of other feeds may overlap it."""
    feed = feed or default_feed(deps.settings.feeds)
    expire_overdue_runs(deps)
    fail_abandoned_planning(deps)
    run_id, planner = create_run(deps, run_type, trigger=trigger, feed=feed)
    return plan_run(deps, coordinator, run_id, planner=planner)


def create_run(deps: PipelineDeps, run_type: RunType, *, trigger: str, feed: FeedConfig) -> tuple[str, str]:
    """Insert the run row with its fixed `updated` window and its feed's query; returns (run id, planner token)."""
    now = deps.clock.now()
    updated_from = None
    if run_type is RunType.INCREMENTAL:
        start = incremental_start(deps, feed.name)
        if start is None:
            # Nothing consolidated yet: an incremental run would have no lower bound, so it is a full run.
            logger.info("no watermark yet, running a full run instead", extra={"feed": feed.name})
            run_type = RunType.FULL
        else:
            updated_from = start - timedelta(minutes=deps.settings.incremental_buffer_minutes)
    run_id, planner = str(uuid.uuid4()), planner_token()
    try:
        with deps.db.transaction() as conn:
            conn.execute(RUNS.insert_run, {
                "run_id": run_id, "feed": feed.name, "run_type": run_type.value, "trigger": trigger,
                "updated_from": updated_from, "updated_to": now, "now": now, "planner": planner,
                "deadline_at": now + timedelta(minutes=deps.settings.run_deadline_minutes),
            })
            # Kept with the run from its first moment: a planner that takes the run over plans the same query.
            conn.execute(FEEDS.store_feed_query, {"run_id": run_id, "query": Jsonb(dict(feed.query))})
    except psycopg.errors.UniqueViolation:
        raise ConflictError(f"a run of feed {feed.name!r} is already active") from None
    return run_id, planner


def planner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def plan_run(deps: PipelineDeps, coordinator: RunCoordinator, run_id: str, *, planner: str | None = None) -> RunPlan:
    """Plan a run in 'planning' (new, re-opened, or abandoned by a dead planner) and enqueue its work.

    Raises PlanningTaken when a live planner owns it. A failure of the feed fails the run and is raised.
    """
    planner = planner or planner_token()
    run = _claim(deps, run_id, planner)
    plan = RunPlan(run_id, run["feed"], RunType(run["run_type"]), run["updated_from"], run["updated_to"])
    filters = feed_query_of(run)
    try:
        with PlanningHeartbeat(deps, run_id, planner) as heartbeat:
            partitions = tuple(_partition(deps, plan, filters, heartbeat))
        plan = RunPlan(plan.run_id, plan.feed, plan.run_type, plan.updated_from, plan.updated_to, partitions)
        _store_plan(deps, plan, filters, planner)
        coordinator.start(plan)
        enqueue_first_pages(deps, plan.run_id, [p.index for p in partitions])
    except PlanningTaken:
        raise
    except OpusError as exc:
        fail_run(deps, run_id, f"planning failed: {exc}")
        raise
    logger.info("run scheduled", extra={"run_id": run_id, "feed": plan.feed, "run_type": plan.run_type.value,
                                        "partitions": len(partitions)})
    return plan


def feed_query_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """The feed's filters a run was created with (a run from before feeds were configurable has none)."""
    plan = run.get("plan")
    query = plan.get("feed_query") if isinstance(plan, dict) else None
    return dict(query) if isinstance(query, dict) else {}


def enqueue_first_pages(deps: PipelineDeps, run_id: str, partitions: list[int]) -> None:
    items = [WorkItem(run_id, p, 0) for p in partitions]
    deps.queue.send_batch(WORK_QUEUE, [OutgoingMessage(item.to_json(), item.message_id) for item in items])


def start_scheduled_run(deps: PipelineDeps, coordinator: RunCoordinator) -> list[str]:
    """What the nightly trigger does (the Azure timer and `opus serve` alike): for every enabled feed, the run
    it is time for, unless one of that feed is active; returns the new runs' ids.

    A feed whose planning fails does not keep the others from running: its run is failed (and alerted) by
    planning, and the next feed is planned.
    """
    started: list[str] = []
    for feed in enabled_feeds(deps.settings.feeds):
        run_type = scheduled_run_type(deps, feed.name)
        try:
            started.append(schedule_run(deps, coordinator, run_type, trigger="schedule", feed=feed).run_id)
        except ConflictError:
            logger.warning("scheduled run skipped: a run is already active", extra={"feed": feed.name})
        except OpusError:
            logger.exception("scheduled run could not be planned", extra={"feed": feed.name})
    return started


def scheduled_run_type(deps: PipelineDeps, feed: str | None = None) -> RunType:
    """What the nightly schedule runs for a feed: incremental, but full when its last full run is too old."""
    feed = feed or default_feed(deps.settings.feeds).name
    with deps.db.connection() as conn:
        row = conn.execute(RUNS.last_completed_full_run, {"feed": feed}).fetchone()
    last_full = row["finished_at"] if row else None
    if last_full is None or deps.clock.now() - last_full >= timedelta(days=deps.settings.full_run_every_days):
        return RunType.FULL
    return RunType.INCREMENTAL


class PlanningHeartbeat:
    """A thread that keeps the planner's claim fresh while the density scan runs (calls may take 45 s each).

    `check()` raises PlanningTaken once the claim is lost (taken over, or the run cancelled), so the scan stops
    at its next count call instead of planning for nothing.
    """

    def __init__(self, deps: PipelineDeps, run_id: str, planner: str) -> None:
        self._deps = deps
        self._run_id = run_id
        self._planner = planner
        self._interval = max(1.0, deps.settings.planning_timeout_s / 4)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"plan-heartbeat-{run_id[:8]}", daemon=True)

    def __enter__(self) -> PlanningHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        if self._lost.is_set():
            raise PlanningTaken(f"run {self._run_id} is no longer planned by this process")

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._deps.db.transaction() as conn:
                    touched = conn.execute(RUNS.planning_heartbeat, {
                        "run_id": self._run_id, "planner": self._planner, "now": self._deps.clock.now()}).rowcount
            except Exception:  # a database blip: try again at the next beat, the claim lasts several beats
                logger.warning("planning heartbeat failed", extra={"run_id": self._run_id}, exc_info=True)
                continue
            if not touched:
                self._lost.set()
                return


def _claim(deps: PipelineDeps, run_id: str, planner: str) -> dict[str, Any]:
    with deps.db.transaction() as conn:
        run = conn.execute(RUNS.claim_planning, {
            "run_id": run_id, "planner": planner, "now": deps.clock.now(),
            "stale_before": planning_stale_before(deps)}).fetchone()
    if run is None:
        raise PlanningTaken(f"run {run_id} is not planning, or a live planner owns it")
    return run


def _partition(
    deps: PipelineDeps, plan: RunPlan, filters: Mapping[str, Any], heartbeat: PlanningHeartbeat
) -> list[Partition]:
    settings = deps.settings

    def count(ppc_from: int | None, ppc_to: int | None) -> int:
        query = FeedQuery(ppc_from, ppc_to, plan.updated_from, plan.updated_to, filters=filters)
        # A count is tried as often as a page (PAGE_ATTEMPTS times the client's own retries): one count that
        # fails for good fails the whole run's planning, where a page fails only its partition's try.
        attempt = 0
        while True:
            attempt += 1
            heartbeat.check()
            try:
                return deps.feed.count(query)
            except FeedTransientError as exc:
                if attempt >= settings.page_attempts:
                    raise
                logger.warning("density count failed; trying again",
                               extra={"run_id": plan.run_id, "attempt": attempt, "error": str(exc)})
                time.sleep(exc.retry_after if exc.retry_after is not None else COUNT_RETRY_S)

    # One count of the whole window sizes the buckets: a quarter of a worker's share (see density.py).
    total = count(None, None)
    target = target_bucket_for(settings.min_records_per_worker, total=total, max_workers=settings.max_workers)
    # The counts go out side by side, as many as the pages will: the shared rate limit spaces them all.
    scan = scan_density(count, target_bucket=target, parallelism=settings.density_scan_parallelism)
    partitions = build_partitions(
        scan.buckets, max_workers=settings.max_workers, min_records_per_worker=settings.min_records_per_worker
    )
    logger.info(
        "density scanned",
        extra={"run_id": plan.run_id, "feed": plan.feed, "count_calls": scan.calls, "buckets": len(scan.buckets),
               "estimated": sum(p.estimated for p in partitions)},
    )
    return partitions


def _store_plan(deps: PipelineDeps, plan: RunPlan, filters: Mapping[str, Any], planner: str) -> None:
    document = {
        "feed_query": dict(filters),
        "run_type": plan.run_type.value,
        "updated_from": _iso(plan.updated_from),
        "updated_to": _iso(plan.updated_to),
        "partitions": [
            {"index": p.index, "ppc_from": p.ppc_from, "ppc_to": p.ppc_to, "estimated": p.estimated}
            for p in plan.partitions
        ],
    }
    with deps.db.transaction() as conn:
        stored = conn.execute(RUNS.store_plan, {
            "run_id": plan.run_id, "plan": Jsonb(document), "partitions_total": len(plan.partitions),
            "planner": planner}).rowcount
        if not stored:
            # Taken over (our heartbeat lapsed) or cancelled meanwhile: the other planner's plan, or none, stands.
            raise PlanningTaken(f"run {plan.run_id} was taken over or ended while it was planned")
        for p in plan.partitions:
            conn.execute(RUNS.insert_partition, {
                "run_id": plan.run_id, "partition": p.index, "ppc_from": p.ppc_from, "ppc_to": p.ppc_to,
                "estimated": p.estimated})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
