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
TRADING = Queries("api_trading")


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    expired: list[str] = field(default_factory=list)  # runs failed by their deadline
    abandoned: list[str] = field(default_factory=list)  # planning runs whose planner died
    settled: list[str] = field(default_factory=list)  # runs whose partitions all ended but nobody settled
    revived_partitions: int = 0  # stalled partitions whose page was enqueued again
    revived_consolidations: list[str] = field(default_factory=list)  # silent consolidations restarted
    published: list[str] = field(default_factory=list)  # feeds whose watermark was published again
    overdue_purchases: list[int] = field(default_factory=list)  # pending purchases alerted about
    pruned: int = 0  # finished messages the queue forgot

    @property
    def anything(self) -> bool:
        return bool(self.expired or self.abandoned or self.settled or self.revived_partitions
                    or self.revived_consolidations or self.published or self.overdue_purchases or self.pruned)


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
        overdue_purchases=alert_overdue_purchases(deps),
        pruned=prune_finished_messages(deps),  # last: the least urgent chore
    )
    if report.anything:
        logger.info("housekeeping acted", extra={
            "expired": len(report.expired), "abandoned": len(report.abandoned), "settled": len(report.settled),
            "revived_partitions": report.revived_partitions,
            "revived_consolidations": len(report.revived_consolidations), "published": len(report.published),
            "overdue_purchases": len(report.overdue_purchases), "pruned": report.pruned})
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


def alert_overdue_purchases(deps: PipelineDeps) -> list[int]:
    """One `purchase_pending` alert per purchase pending for longer than `PURCHASE_PENDING_ALERT_S`.

    Its API process died before storing the feed's answer. Nothing here can settle it: Nivoda has no order
    query and no idempotency key, so whether the order arrived is for an operator to check, and ordering again
    could buy the stone twice. Each purchase is marked before its alert is raised, so that concurrent
    housekeepers alert once; a crash between the two loses that alert, never the purchase, which
    `opus purchases pending` still lists.
    """
    now = deps.clock.now()
    before = now - timedelta(seconds=deps.settings.purchase_pending_alert_s)
    with deps.db.transaction() as conn:
        overdue = conn.execute(TRADING.mark_overdue_purchases_alerted, {"now": now, "before": before}).fetchall()
    for row in overdue:
        purchase_id = int(row["id"])
        deps.alerts.raise_alert(
            "purchase_pending",
            f"Purchase {purchase_id} of diamond {row['diamond_id']} has waited for the feed's answer since "
            f"{row['created_at'].isoformat()}: its API process died mid-order. Look in Nivoda for an order of offer "
            f"{row['offer_id']} with customer order number {row['customer_order_number']!r}, then resolve it: "
            f"`opus purchases resolve {purchase_id} --ordered ORDER_ID` or `--failed REASON` "
            f"(or POST /api/v2/purchases/{purchase_id}/resolve).",
            details={"purchase_id": purchase_id, "diamond_id": int(row["diamond_id"]),
                     "offer_id": row["offer_id"], "supplier_stone_id": row["supplier_stone_id"],
                     "customer_order_number": row["customer_order_number"],
                     "requested_by": row["requested_by"], "created_at": row["created_at"].isoformat()},
        )
    return [int(row["id"]) for row in overdue]
