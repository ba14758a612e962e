"""Housekeeping: the chores that make every crash recoverable without an operator, on every runtime.

Called about every `HOUSEKEEPING_INTERVAL_S` by the local runtime while it consumes (`opus run`, `opus worker`,
`opus serve`) and by the housekeeping timer on Azure. Each chore is idempotent and safe to run from several
processes at once. Queue pruning is one of them: the local queue keeps finished messages so that their ids
deduplicate, and must be told when to forget them; Service Bus forgets them itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, runtime_checkable

from opus.db.queries import Queries
from opus.domain.models import WorkItem
from opus.pipeline.coordinator import settle_run, start_consolidation
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import expire_overdue_runs, fail_abandoned_planning, publish_watermark
from opus.ports import WORK_QUEUE

logger = logging.getLogger(__name__)
RUNS = Queries("runs")


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    expired: list[str] = field(default_factory=list)  # runs failed by their deadline
    abandoned: list[str] = field(default_factory=list)  # planning runs whose planner died
    settled: list[str] = field(default_factory=list)  # runs whose partitions all ended but nobody settled
    revived_partitions: int = 0  # stalled partitions whose page was enqueued again
    revived_consolidations: list[str] = field(default_factory=list)  # silent consolidations restarted
    published: list[str] = field(default_factory=list)  # feeds whose watermark was published again
    pruned: int = 0  # finished messages the queue forgot

    @property
    def anything(self) -> bool:
        return bool(self.expired or self.abandoned or self.settled or self.revived_partitions
                    or self.revived_consolidations or self.published or self.pruned)


@runtime_checkable
class PrunableQueue(Protocol):
    """A WorkQueue that keeps finished messages (their ids deduplicate) until told to forget them."""

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete finished messages older than this (default: the queue's deduplication window)."""
        ...


def run_housekeeping(deps: PipelineDeps) -> HousekeepingReport:
    report = HousekeepingReport(
        expired=expire_overdue_runs(deps),
        abandoned=fail_abandoned_planning(deps),
        settled=settle_unsettled_runs(deps),
        revived_partitions=revive_stalled_partitions(deps),
        revived_consolidations=revive_stalled_consolidations(deps),
        published=republish_watermarks(deps),
        pruned=prune_finished_messages(deps),  # last: the least urgent chore
    )
    if report.anything:
        logger.info("housekeeping acted", extra={
            "expired": len(report.expired), "abandoned": len(report.abandoned), "settled": len(report.settled),
            "revived_partitions": report.revived_partitions,
            "revived_consolidations": len(report.revived_consolidations), "published": len(report.published),
            "pruned": report.pruned})
    return report


def prune_finished_messages(deps: PipelineDeps) -> int:
    """Forget finished messages once their ids no longer need to deduplicate; a queue that forgets them on its own
    (Service Bus) has nothing to prune."""
    if isinstance(deps.queue, PrunableQueue):
        return deps.queue.prune()
    return 0


def settle_unsettled_runs(deps: PipelineDeps) -> list[str]:
    """Runs whose partitions all ended while no announcement reached the coordinator (lost, or dropped)."""
    with deps.db.connection() as conn:
        run_ids = [str(r["run_id"]) for r in conn.execute(RUNS.unsettled_runs)]
    for run_id in run_ids:
        settle_run(deps, run_id)
    return run_ids


def revive_stalled_partitions(deps: PipelineDeps) -> int:
    """Enqueue again the page of every partition nobody advanced for `PARTITION_STALL_S`.

    Its message was lost or dead-lettered; a duplicate of a live one is harmless (the offset guard lets one
    store the page, and the continuations collapse by message id). The copy has its own id, since duplicate
    detection remembers the original's.
    """
    now = deps.clock.now()
    stale_before = now - timedelta(seconds=deps.settings.partition_stall_s)
    with deps.db.connection() as conn:
        stalled = conn.execute(RUNS.stalled_partitions, {"stale_before": stale_before}).fetchall()
    for row in stalled:
        item = WorkItem(str(row["run_id"]), int(row["partition"]), int(row["next_offset"]))
        with deps.db.transaction() as conn:
            conn.execute(RUNS.touch_partition, {"run_id": item.run_id, "partition": item.partition, "now": now})
        deps.queue.send(WORK_QUEUE, item.to_json(), message_id=f"{item.message_id}:revived-{uuid.uuid4().hex[:8]}")
        logger.warning("stalled partition revived", extra={"run_id": item.run_id, "partition": item.partition,
                                                           "offset": item.offset})
    return len(stalled)


def revive_stalled_consolidations(deps: PipelineDeps) -> list[str]:
    """Start a fresh chain for a consolidating run with no progress for longer than a claim and two slices."""
    s = deps.settings
    now = deps.clock.now()
    quiet = timedelta(seconds=s.claim_ttl_seconds + 2 * s.consolidator_slice_s + 60)
    with deps.db.connection() as conn:
        run_ids = [str(r["run_id"]) for r in conn.execute(RUNS.stalled_consolidations, {"stale_before": now - quiet})]
    for run_id in run_ids:
        with deps.db.transaction() as conn:
            conn.execute(RUNS.consolidation_active, {"run_id": run_id, "now": now})
        start_consolidation(deps, run_id, tag=f"revived-{uuid.uuid4().hex[:8]}")
        logger.warning("stalled consolidation revived", extra={"run_id": run_id})
    return run_ids


def republish_watermarks(deps: PipelineDeps) -> list[str]:
    """Publish every feed's committed watermark that the WatermarkStore lags behind (a publish that failed)."""
    with deps.db.connection() as conn:
        committed = {str(r["feed"]): r["value"] for r in conn.execute(RUNS.committed_watermarks)}
    published = []
    for feed, value in committed.items():
        try:
            current = deps.watermarks.get(feed)
        except Exception as exc:  # the store is down: try again next time
            logger.warning("watermark store unreadable", extra={"feed": feed, "error": str(exc)})
            continue
        if (current is None or current < value) and publish_watermark(deps, feed, value):
            published.append(feed)
    return published
