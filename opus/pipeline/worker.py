"""Step 2 of a run: one page per message, stored idempotently, then the continuation.

A message names (run, partition, offset). The partition's `next_offset` in `partition_progress` says how far
the stored data reaches, so a redelivered or duplicated message is recognised: if the page was already stored,
its continuation is re-sent (the message id deduplicates it) instead of being dropped, which would stall the
partition if the first continuation had been lost in a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from opus.config import Settings
from opus.db.queries import Queries
from opus.domain.models import FeedQuery, PartitionStatus, RunStatus, RunType, WorkItem
from opus.errors import FeedPermanentError, FeedTransientError, PermanentError
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.raw_store import RawPage, store_page
from opus.ports import JSON, WORK_QUEUE

logger = logging.getLogger(__name__)
Q = Queries("runs")

TERMINAL = (PartitionStatus.SUCCEEDED, PartitionStatus.FAILED)


def handle_work_item(deps: PipelineDeps, body: JSON, delivery_count: int = 1) -> None:
    """Process one work-item message. Raises TransientError to have the message retried later."""
    try:
        item = WorkItem.from_json(body)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None
    with deps.db.connection() as conn:
        part = conn.execute(Q.get_partition, {"run_id": item.run_id, "partition": item.partition}).fetchone()
    if part is None:
        logger.warning("work item for an unknown partition dropped", extra=_ctx(item))
        return
    if part["run_status"] != RunStatus.RUNNING:
        logger.info("work item for a run that is not running dropped", extra=_ctx(item))
        return
    if part["status"] in TERMINAL:
        # A redelivery after the partition ended: tell the coordinator again, it is idempotent.
        deps.coordinator.partition_finished(item.run_id, item.partition, part["status"] == PartitionStatus.SUCCEEDED)
        return
    if part["next_offset"] > item.offset:
        _continue(deps, WorkItem(item.run_id, item.partition, part["next_offset"]))
        return
    if part["next_offset"] < item.offset:
        logger.warning("work item ahead of its partition dropped", extra=_ctx(item))
        return
    cap = page_cap(deps.settings, part["estimated"])
    if part["pages"] >= cap:
        _finish(deps, item, ok=False, error=f"page cap of {cap} reached (runaway)")
        return
    query = _query(part)
    try:
        items = deps.feed.page(query, item.offset, deps.settings.worker_page_size)
    except FeedTransientError as exc:
        if delivery_count >= deps.settings.queue_max_deliveries:
            _finish(deps, item, ok=False, error=f"feed kept failing: {exc}")
            return
        raise
    except FeedPermanentError as exc:
        _finish(deps, item, ok=False, error=f"feed refused the page: {exc}")
        return
    if not items:
        _finish(deps, item, ok=True, error=None)
        return
    page = RawPage(
        run_id=item.run_id, feed=part["feed"], partition=item.partition, offset=item.offset,
        items=items, full_run=part["run_type"] == RunType.FULL,
    )
    if store_page(deps.db, page):
        _continue(deps, WorkItem(item.run_id, item.partition, item.offset + len(items)))
        return
    # Another delivery of this message stored the page first (its page may have been shorter than ours, and
    # it may have died before sending on): continue from what is stored; the message id deduplicates.
    with deps.db.connection() as conn:
        now = conn.execute(Q.get_partition, {"run_id": item.run_id, "partition": item.partition}).fetchone()
    if now is not None and now["status"] not in TERMINAL:
        _continue(deps, WorkItem(item.run_id, item.partition, now["next_offset"]))


def page_cap(settings: Settings, estimated: int) -> int:
    """How many pages a partition may fetch. Nivoda can keep returning rows past a range's count, but not
    without end: three times the estimate (plus slack for small partitions) is a runaway."""
    if settings.partition_page_cap is not None:
        return settings.partition_page_cap
    return 3 * -(-estimated // settings.worker_page_size) + 100


def _query(part: dict[str, Any]) -> FeedQuery:
    return FeedQuery(part["ppc_from"], part["ppc_to"], part["updated_from"], part["updated_to"])


def _continue(deps: PipelineDeps, nxt: WorkItem) -> None:
    deps.queue.send(WORK_QUEUE, nxt.to_json(), message_id=nxt.message_id)


def _finish(deps: PipelineDeps, item: WorkItem, *, ok: bool, error: str | None) -> None:
    status = PartitionStatus.SUCCEEDED if ok else PartitionStatus.FAILED
    with deps.db.transaction() as conn:
        conn.execute(
            Q.finish_partition,
            {"run_id": item.run_id, "partition": item.partition, "status": status.value, "error": error,
             "offset": item.offset if ok else None},
        )
    if not ok:
        logger.warning("partition failed", extra={**_ctx(item), "error": error})
    deps.coordinator.partition_finished(item.run_id, item.partition, ok)


def _ctx(item: WorkItem) -> dict[str, object]:
    return {"run_id": item.run_id, "partition": item.partition, "offset": item.offset}
