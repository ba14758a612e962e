"""Step 2 of a run: one page per message, stored idempotently, then the continuation.

A message names (run, partition, offset). The partition's `next_offset` in `partition_progress` says how far
the stored data reaches, so a redelivered or duplicated message is recognised: if the page was already stored,
its continuation is re-sent (the message id deduplicates it) instead of being dropped, which would stall the
partition if the first continuation had been lost in a crash.

Failed tries of a page are counted in `partition_progress.attempts`, not read from the transport: a retry is a
scheduled copy of the message with its own id, so the copy, a redelivery after a crash and the queue's
dead-letter policy cannot disagree about when a partition has failed.
"""

from __future__ import annotations

import logging
from typing import Any

from opus.config import Settings
from opus.db.queries import Queries
from opus.domain.models import FeedQuery, PartitionStatus, RunStatus, RunType, WorkItem
from opus.errors import FeedPermanentError, FeedTransientError
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.outcomes import Outcome, PartitionFinished, backoff_s
from opus.pipeline.raw_store import RawPage, store_page
from opus.ports import JSON, WORK_QUEUE

logger = logging.getLogger(__name__)
RUNS = Queries("runs")
FEEDS = Queries("feeds")

TERMINAL = (PartitionStatus.SUCCEEDED, PartitionStatus.FAILED)


def handle_work_item(deps: PipelineDeps, body: JSON) -> Outcome:
    """Process one work-item message and say what should happen to it."""
    try:
        item = WorkItem.from_json(body)
    except ValueError as exc:
        return Outcome.give_up(str(exc))
    with deps.db.connection() as conn:
        part = conn.execute(RUNS.get_partition, {"run_id": item.run_id, "partition": item.partition}).fetchone()
    if part is None:
        logger.warning("work item for an unknown partition dropped", extra=_ctx(item))
        return Outcome.done()
    if part["run_status"] != RunStatus.RUNNING:
        logger.info("work item for a run that is not running dropped", extra=_ctx(item))
        return Outcome.done()
    if part["status"] in TERMINAL:
        # A redelivery after the partition ended: announce it again, the coordinator is idempotent.
        return Outcome.done(PartitionFinished(item.run_id, item.partition, part["status"] == PartitionStatus.SUCCEEDED))
    if part["next_offset"] > item.offset:
        _continue(deps, WorkItem(item.run_id, item.partition, part["next_offset"]))
        return Outcome.done()
    if part["next_offset"] < item.offset:
        logger.warning("work item ahead of its partition dropped", extra=_ctx(item))
        return Outcome.done()
    cap = page_cap(deps.settings, part["estimated"])
    if part["pages"] >= cap:
        return _finish(deps, item, ok=False, error=f"page cap of {cap} reached (runaway)")
    try:
        items = deps.feed.page(_query(deps, part), item.offset, deps.settings.worker_page_size)
    except FeedTransientError as exc:
        return _failed_try(deps, item, exc)
    except FeedPermanentError as exc:
        return _finish(deps, item, ok=False, error=f"feed refused the page: {exc}")
    if not items:
        return _finish(deps, item, ok=True, error=None)
    page = RawPage(
        run_id=item.run_id, feed=part["feed"], partition=item.partition, offset=item.offset,
        items=items, full_run=part["run_type"] == RunType.FULL,
    )
    changed = store_page(deps.db, page)
    if changed is not None:
        # The workbook's stones, pages/s and partitions panels count these lines (infra/bicep/modules/workbook.json).
        logger.info("page stored", extra={**_ctx(item), "feed": page.feed, "attempt": int(part["attempts"]) + 1,
                                          "stones": len(items), "changed": changed})
        _continue(deps, WorkItem(item.run_id, item.partition, item.offset + len(items)))
        return Outcome.done()
    # Another delivery of this message stored the page first (its page may have been shorter than ours, and
    # it may have died before sending on): continue from what is stored; the message id deduplicates.
    with deps.db.connection() as conn:
        now = conn.execute(RUNS.get_partition, {"run_id": item.run_id, "partition": item.partition}).fetchone()
    if now is not None and now["status"] not in TERMINAL:
        _continue(deps, WorkItem(item.run_id, item.partition, now["next_offset"]))
    return Outcome.done()


def page_cap(settings: Settings, estimated: int) -> int:
    """How many pages a partition may fetch. Nivoda can keep returning rows past a range's count, but not
    without end: three times the estimate (plus slack for small partitions) is a runaway."""
    if settings.partition_page_cap is not None:
        return settings.partition_page_cap
    return 3 * -(-estimated // settings.worker_page_size) + 100


def retry_message_id(item: WorkItem, attempt: int) -> str:
    """The copy that retries a page names its attempt: the page's own id is held by duplicate detection."""
    return f"{item.message_id}:attempt-{attempt}"


def _failed_try(deps: PipelineDeps, item: WorkItem, exc: FeedTransientError) -> Outcome:
    error = f"feed kept failing: {exc}"
    with deps.db.transaction() as conn:
        row = conn.execute(RUNS.record_attempt, {
            "run_id": item.run_id, "partition": item.partition, "offset": item.offset, "error": str(exc)[:500],
        }).fetchone()
    if row is None:
        return Outcome.done()  # the page was stored or the partition ended meanwhile: nothing to retry
    attempts = int(row["attempts"])
    if attempts >= deps.settings.page_attempts:
        return _finish(deps, item, ok=False, error=error)
    delay = exc.retry_after if exc.retry_after is not None else backoff_s(attempts)
    logger.warning("page failed, retrying", extra={**_ctx(item), "attempt": attempts, "delay_s": delay,
                                                   "error": str(exc)})
    return Outcome.retry_later(item.to_json(), retry_message_id(item, attempts), delay, str(exc))


def _query(deps: PipelineDeps, part: dict[str, Any]) -> FeedQuery:
    """The partition's range within its run's window and its feed's filters, as stored with the run (a config
    change since the run was created changes nothing here)."""
    with deps.db.connection() as conn:
        row = conn.execute(FEEDS.feed_query_of_run, {"run_id": part["run_id"]}).fetchone()
    filters = row["feed_query"] if row and isinstance(row["feed_query"], dict) else None
    return FeedQuery(part["ppc_from"], part["ppc_to"], part["updated_from"], part["updated_to"], filters=filters)


def _continue(deps: PipelineDeps, nxt: WorkItem) -> None:
    deps.queue.send(WORK_QUEUE, nxt.to_json(), message_id=nxt.message_id)


def _finish(deps: PipelineDeps, item: WorkItem, *, ok: bool, error: str | None) -> Outcome:
    status = PartitionStatus.SUCCEEDED if ok else PartitionStatus.FAILED
    with deps.db.transaction() as conn:
        conn.execute(
            RUNS.finish_partition,
            {"run_id": item.run_id, "partition": item.partition, "status": status.value, "error": error,
             "offset": item.offset if ok else None},
        )
    if not ok:
        logger.warning("partition failed", extra={**_ctx(item), "error": error})
    return Outcome.done(PartitionFinished(item.run_id, item.partition, ok))


def _ctx(item: WorkItem) -> dict[str, object]:
    return {"run_id": item.run_id, "partition": item.partition, "offset": item.offset}
