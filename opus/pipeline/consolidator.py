"""Step 4 of a run: map, price and bulk-upsert the raw rows, as a chain of bounded slices, then close the run.

Each consolidate message works for at most `CONSOLIDATOR_SLICE_S`, then sends the next link of its chain;
`CONSOLIDATOR_CONCURRENCY` chains run side by side (on Azure, on different instances). Raw rows are claimed in
batches with a TTL, so a crashed claimant's rows are taken over. A chain never ends while the run's feed still has
rows pending, claimed or not: if others hold them, it comes back when their claims could have expired. Chain 0,
finding nothing pending, confirms deletions (full runs) and finalizes. Parsing, mapping and pricing happen in
`deps.preparer`: in the claimant's thread, or in worker processes while the claimant claims its next batch and
writes its last (`consolidate_batches`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from psycopg.types.json import Jsonb

from opus.db.pool import Connection
from opus.db.queries import Queries
from opus.domain.mapping import MAPPING_VERSION
from opus.domain.models import ConsolidateMessage, RunStatus, RunType
from opus.errors import FeedTransientError
from opus.pipeline.deletions import confirm_unseen
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.diamond_rows import load_pricing_rules, rules_version
from opus.pipeline.finalize import finalize
from opus.pipeline.outcomes import Outcome, backoff_s
from opus.pipeline.preparers import PendingBatch
from opus.pipeline.runs import get_run
from opus.pipeline.staging_rows import ClaimedRow, MappingFailure, PreparedBatch, StagingTask, prepare_staging
from opus.ports import CONSOLIDATE_QUEUE, JSON

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")
SQL = Queries("consolidate")

# When rows are held by another claimant, come back within this window: soon enough to take over a dead one's
# rows right after their claim expires, rarely enough not to spin.
_WAIT_MIN_S, _WAIT_MAX_S = 0.5, 10.0


@dataclass(frozen=True, slots=True)
class BatchResult:
    consolidated: int  # rows processed: rebuilt, or released because their diamond was already built from them
    errors: int
    unchanged: int = 0  # of `consolidated`, rows released unread


@dataclass(frozen=True, slots=True)
class SliceResult:
    status: str  # the run's status when the slice ended
    consolidated: int
    errors: int
    continue_after_s: float | None  # None: this chain ends; else send the next link, due after this long


def handle_consolidate(deps: PipelineDeps, body: JSON) -> Outcome:
    """Queue handler for one link of a consolidation chain (`ConsolidateMessage`)."""
    try:
        message = ConsolidateMessage.from_json(body)
    except ValueError as exc:
        return Outcome.give_up(str(exc))
    try:
        result = consolidate_slice(deps, message.run_id, chain=message.chain, force=message.force)
    except FeedTransientError as exc:  # confirming deletions asks the feed
        retry = message.retried()
        delay = exc.retry_after if exc.retry_after is not None else backoff_s(retry.attempt)
        return Outcome.retry_later(retry.to_json(), retry.message_id, delay, str(exc))
    if result.continue_after_s is not None:
        nxt = message.following()
        deps.queue.send(CONSOLIDATE_QUEUE, nxt.to_json(), message_id=nxt.message_id, delay_s=result.continue_after_s)
    return Outcome.done()


def consolidate_run(deps: PipelineDeps, run_id: str, *, force: bool = False) -> str:
    """Consolidate in this process, slice after slice, until the chain would end; returns the run's status."""
    while True:
        result = consolidate_slice(deps, run_id, chain=0, force=force)
        if result.continue_after_s is None:
            return result.status
        time.sleep(result.continue_after_s)


def drain(deps: PipelineDeps, run_id: str, feed: str) -> BatchResult:
    """Consolidate the feed's claimable rows with `CONSOLIDATOR_CONCURRENCY` claimants at once, until none is left
    (no slicing, no finalizing): what the chains do, in one process, for benchmarks and tools."""
    base = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def claimant(i: int) -> BatchResult:
        consolidated = errors = unchanged = 0
        for batch in consolidate_batches(deps, run_id, feed, f"{base}:{i}"):
            consolidated, errors = consolidated + batch.consolidated, errors + batch.errors
            unchanged += batch.unchanged
        return BatchResult(consolidated, errors, unchanged)

    workers = deps.settings.consolidator_concurrency
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="consolidate") as pool:
        results = list(pool.map(claimant, range(workers)))
    return BatchResult(sum(r.consolidated for r in results), sum(r.errors for r in results),
                       sum(r.unchanged for r in results))


def consolidate_slice(deps: PipelineDeps, run_id: str, *, chain: int, force: bool = False) -> SliceResult:
    """One bounded slice of work on a run's consolidation; see the module docstring for when a chain ends."""
    started = time.monotonic()
    result = _slice(deps, run_id, chain=chain, force=force)
    logger.info("consolidation slice", extra={
        "run_id": run_id, "chain": chain, "consolidated": result.consolidated, "errors": result.errors,
        "status": result.status, "seconds": round(time.monotonic() - started, 3),
        "continue_after_s": result.continue_after_s})
    return result


def _slice(deps: PipelineDeps, run_id: str, *, chain: int, force: bool) -> SliceResult:
    run = get_run(deps, run_id)
    if run is None:
        logger.warning("consolidation of an unknown run skipped", extra={"run_id": run_id})
        return SliceResult("unknown", 0, 0, None)
    consolidating = run["status"] == RunStatus.CONSOLIDATING
    if not (consolidating or force):
        logger.info("consolidation not due", extra={"run_id": run_id, "status": run["status"]})
        return SliceResult(str(run["status"]), 0, 0, None)
    feed = run["feed"]
    deadline = time.monotonic() + deps.settings.consolidator_slice_s
    with deps.db.transaction() as conn:  # a live chain keeps housekeeping from reviving the consolidation
        conn.execute(RUNS.consolidation_active, {"run_id": run_id, "now": deps.clock.now()})
    claimant = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    consolidated = errors = 0
    for batch in consolidate_batches(deps, run_id, feed, claimant, more=lambda: time.monotonic() < deadline):
        consolidated += batch.consolidated
        errors += batch.errors
    if time.monotonic() >= deadline:
        return SliceResult(str(run["status"]), consolidated, errors, 0.0)
    pending, next_expiry = _pending(deps, feed)
    if pending:
        # Claimed by others, alive or dead: come back, at the latest when their claims run out.
        return SliceResult(str(run["status"]), consolidated, errors, _wait_for(deps, next_expiry))
    if not consolidating or chain != 0:
        return SliceResult(str(run["status"]), consolidated, errors, None)
    if run["run_type"] == RunType.FULL:
        step = confirm_unseen(deps, run, deadline)
        if step.still_listed or step.more:
            return SliceResult(str(run["status"]), consolidated, errors, 0.0)
    status = finalize(deps, run_id)
    return SliceResult(status, consolidated, errors, 0.0 if status == RunStatus.CONSOLIDATING else None)


def consolidate_batch(deps: PipelineDeps, run_id: str, feed: str, claimant: str) -> BatchResult | None:
    """Claim, map, price and upsert one batch of the feed's pending rows; None when nothing was claimable.

    Rows whose diamond was built from the same payload, mapping and rules are released by the claim itself and
    counted as consolidated (`unchanged`): nothing of them is read, parsed or written to `diamonds`.
    """
    claimed = _claim(deps, run_id, feed, claimant)
    return None if claimed is None else _write(deps, run_id, feed, claimant, claimed)


def consolidate_batches(deps: PipelineDeps, run_id: str, feed: str, claimant: str,
                        more: Callable[[], bool] = lambda: True) -> Iterator[BatchResult]:
    """`consolidate_batch` again and again, until nothing is claimable or `more()` turns false. The next batch
    is claimed, and handed to the preparer, before this one is written: with worker processes, preparing one
    batch overlaps the database work of the other."""
    in_flight = _claim(deps, run_id, feed, claimant)
    while in_flight is not None:
        following = _claim(deps, run_id, feed, claimant) if more() else None
        yield _write(deps, run_id, feed, claimant, in_flight)
        in_flight = following


@dataclass(frozen=True, slots=True)
class _Claimed:
    to_build: list[int]  # raw ids to release once written
    unchanged: int
    task: StagingTask
    prepared: PendingBatch | None


def _claim(deps: PipelineDeps, run_id: str, feed: str, claimant: str) -> _Claimed | None:
    settings = deps.settings
    with deps.db.transaction() as conn:
        # The rules and their version, read together under the rules lock, price the batch; `_write` checks
        # that the version is still current before it writes those prices.
        conn.execute(SQL.lock_rules)
        rules, version = load_pricing_rules(conn), rules_version(conn)
        claimed = conn.execute(
            RAW.claim_built_or_batch,
            {"claimant": claimant, "feed": feed, "now": deps.clock.now(), "ttl_s": settings.claim_ttl_seconds,
             "limit": settings.consolidator_batch_size, "mapping_version": MAPPING_VERSION},
        ).fetchall()
    if not claimed:
        return None
    to_build = sorted((row for row in claimed if row["payload"] is not None), key=lambda r: r["id"])
    task = StagingTask(
        tuple(ClaimedRow(r["supplier_stone_id"], r["payload"], r["payload_hash"]) for r in to_build),
        feed, run_id, rules, version)
    prepared = deps.preparer.submit(task) if to_build else None
    return _Claimed([r["id"] for r in to_build], len(claimed) - len(to_build), task, prepared)


def _write(deps: PipelineDeps, run_id: str, feed: str, claimant: str, claimed: _Claimed) -> BatchResult:
    batch = claimed.prepared.result() if claimed.prepared is not None else None
    written = failed = 0
    with deps.db.transaction() as conn:
        if batch is not None:
            batch = _with_current_prices(conn, claimed.task, batch)
            written, failed = len(batch.lines), len(batch.failures)
            if batch.lines:
                conn.execute(SQL.create_staging)
                with conn.cursor().copy(SQL.copy_staging) as copy:
                    copy.write("".join(batch.lines.values()))
                conn.execute(SQL.upsert_from_staging)
            conn.execute(RAW.release_batch, {"ids": claimed.to_build, "claimant": claimant})
            _record_failures(conn, run_id, feed, batch.failures)
        conn.execute(RUNS.count_consolidated,
                     {"run_id": run_id, "consolidated": written + claimed.unchanged, "errors": failed})
    if batch is not None and batch.unpriced:
        logger.warning("diamonds matched no pricing rule", extra={"run_id": run_id, "count": batch.unpriced})
    return BatchResult(written + claimed.unchanged, failed, claimed.unchanged)


def _with_current_prices(conn: Connection, task: StagingTask, batch: PreparedBatch) -> PreparedBatch:
    """The batch, priced by the rules in force now. Under the rules lock until commit: a rule change (which
    reprices set-based) waits for this batch, and this batch for it, so stale prices never overwrite fresh ones.
    The rules are rarely changed between a claim and its write; when they were, the batch is prepared again."""
    conn.execute(SQL.lock_rules)
    version = rules_version(conn)
    if version == batch.rules_version:
        return batch
    return prepare_staging(replace(task, rules=load_pricing_rules(conn), rules_version=version))


def _record_failures(conn: Connection, run_id: str, feed: str, failures: list[MappingFailure]) -> None:
    """Each failure goes to error_logs; a stone we already list keeps its last good data, marked as stale."""
    if not failures:
        return
    for failure in failures:
        conn.execute(
            RUNS.insert_error,
            {"run_id": run_id, "feed": feed, "source": "mapping", "supplier_stone_id": failure.supplier_stone_id,
             "field": failure.error.field, "message": str(failure.error), "payload": Jsonb(failure.payload)},
        )
    conn.execute(SQL.mark_record_errors, {
        "feed": feed, "stone_ids": [str(f.supplier_stone_id) for f in failures],
        "messages": [str(f.error) for f in failures],
    })
    logger.warning("records could not be mapped", extra={"run_id": run_id, "count": len(failures)})


def _pending(deps: PipelineDeps, feed: str) -> tuple[int, datetime | None]:
    with deps.db.connection() as conn:
        row = conn.execute(RAW.pending_of_feed, {"feed": feed, "now": deps.clock.now()}).fetchone()
    assert row is not None
    return int(row["pending"]), row["next_claim_expiry"]


def _wait_for(deps: PipelineDeps, next_expiry: datetime | None) -> float:
    if next_expiry is None:
        return _WAIT_MIN_S
    seconds = (next_expiry - deps.clock.now()).total_seconds()
    return min(_WAIT_MAX_S, max(_WAIT_MIN_S, seconds))
