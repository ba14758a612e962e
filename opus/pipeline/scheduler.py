"""Step 1 of a run: create it, scan the feed's density, store the partitions, enqueue one item each."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from opus.db.queries import Queries
from opus.domain.heatmap import build_partitions
from opus.domain.models import FeedQuery, Partition, RunPlan, RunType, WorkItem
from opus.errors import ConflictError, OpusError
from opus.pipeline.density import scan_density, target_bucket_for
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import expire_overdue_runs, fail_run
from opus.ports import WORK_QUEUE, OutgoingMessage

logger = logging.getLogger(__name__)
Q = Queries("runs")


def schedule_run(deps: PipelineDeps, run_type: RunType, *, trigger: str = "cli") -> RunPlan:
    """Plan a run and enqueue its first page per partition. Raises ConflictError if one is active."""
    expire_overdue_runs(deps)
    now = deps.clock.now()
    updated_from = None
    if run_type is RunType.INCREMENTAL:
        watermark = deps.watermarks.get(deps.feed.name)
        if watermark is None:
            # Nothing consolidated yet: an incremental run would have no lower bound, so it is a full run.
            logger.info("no watermark yet, running a full run instead", extra={"feed": deps.feed.name})
            run_type = RunType.FULL
        else:
            updated_from = watermark - timedelta(minutes=deps.settings.incremental_buffer_minutes)
    run_id = str(uuid.uuid4())
    try:
        with deps.db.transaction() as conn:
            conn.execute(
                Q.insert_run,
                {
                    "run_id": run_id, "feed": deps.feed.name, "run_type": run_type.value, "trigger": trigger,
                    "updated_from": updated_from, "updated_to": now,
                    "deadline_at": now + timedelta(minutes=deps.settings.run_deadline_minutes),
                },
            )
    except psycopg.errors.UniqueViolation:
        raise ConflictError(f"a run of feed {deps.feed.name!r} is already active") from None
    plan = RunPlan(run_id, deps.feed.name, run_type, updated_from, now)
    try:
        plan = RunPlan(run_id, plan.feed, run_type, updated_from, now, tuple(_partition(deps, plan)))
        _store_plan(deps, plan)
        deps.coordinator.start(plan)
        deps.queue.send_batch(
            WORK_QUEUE,
            [
                OutgoingMessage(item.to_json(), item.message_id)
                for item in (WorkItem(run_id, p.index, 0) for p in plan.partitions)
            ],
        )
    except OpusError as exc:
        fail_run(deps, run_id, f"planning failed: {exc}")
        raise
    logger.info(
        "run scheduled",
        extra={"run_id": run_id, "run_type": run_type.value, "partitions": len(plan.partitions)},
    )
    return plan


def scheduled_run_type(deps: PipelineDeps) -> RunType:
    """What the nightly schedule runs: incremental, but full when the last full run is too old."""
    with deps.db.connection() as conn:
        row = conn.execute(Q.last_completed_full_run, {"feed": deps.feed.name}).fetchone()
    last_full = row["finished_at"] if row else None
    if last_full is None or deps.clock.now() - last_full >= timedelta(days=deps.settings.full_run_every_days):
        return RunType.FULL
    return RunType.INCREMENTAL


def _partition(deps: PipelineDeps, plan: RunPlan) -> list[Partition]:
    settings = deps.settings

    def count(ppc_from: int, ppc_to: int) -> int:
        return deps.feed.count(FeedQuery(ppc_from, ppc_to, plan.updated_from, plan.updated_to))

    # One count of the whole window sizes the buckets: a quarter of a worker's share (see density.py).
    total = deps.feed.count(FeedQuery(None, None, plan.updated_from, plan.updated_to))
    target = target_bucket_for(settings.min_records_per_worker, total=total, max_workers=settings.max_workers)
    scan = scan_density(count, target_bucket=target)
    partitions = build_partitions(
        scan.buckets, max_workers=settings.max_workers, min_records_per_worker=settings.min_records_per_worker
    )
    logger.info(
        "density scanned",
        extra={"run_id": plan.run_id, "count_calls": scan.calls, "buckets": len(scan.buckets),
               "estimated": sum(p.estimated for p in partitions)},
    )
    return partitions


def _store_plan(deps: PipelineDeps, plan: RunPlan) -> None:
    document = {
        "run_type": plan.run_type.value,
        "updated_from": plan.updated_from.isoformat() if plan.updated_from else None,
        "updated_to": plan.updated_to.isoformat(),
        "partitions": [
            {"index": p.index, "ppc_from": p.ppc_from, "ppc_to": p.ppc_to, "estimated": p.estimated}
            for p in plan.partitions
        ],
    }
    with deps.db.transaction() as conn:
        for p in plan.partitions:
            conn.execute(
                Q.insert_partition,
                {"run_id": plan.run_id, "partition": p.index, "ppc_from": p.ppc_from, "ppc_to": p.ppc_to,
                 "estimated": p.estimated},
            )
        conn.execute(
            Q.store_plan,
            {"run_id": plan.run_id, "plan": Jsonb(document), "partitions_total": len(plan.partitions)},
        )
