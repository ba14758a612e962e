"""Step 4 of a run: map, price and bulk-upsert the raw rows, as a chain of bounded slices, then close the run.

Each consolidate message works for at most `CONSOLIDATOR_SLICE_S`, then sends the next link of its chain;
`CONSOLIDATOR_CONCURRENCY` chains run side by side (on Azure, on different instances). Raw rows are claimed in
batches with a TTL, so a crashed claimant's rows are taken over. A chain never ends while the run's feed still has
rows pending, claimed or not: if others hold them, it comes back when their claims could have expired. Chain 0,
finding nothing pending, confirms deletions (full runs) and finalizes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from opus.db.pool import Connection
from opus.db.queries import Queries
from opus.domain.mapping import MAPPING_VERSION, MappingError, map_nivoda_item
from opus.domain.models import ConsolidateMessage, Diamond, RunStatus, RunType
from opus.errors import FeedTransientError
from opus.pipeline.deletions import confirm_unseen
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.diamond_rows import BuiltFrom, load_pricing_engine, rules_version, to_staging_row
from opus.pipeline.finalize import finalize
from opus.pipeline.outcomes import Outcome, backoff_s
from opus.pipeline.raw_store import parse_payload
from opus.pipeline.runs import get_run
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
        while (batch := consolidate_batch(deps, run_id, feed, f"{base}:{i}")) is not None:
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
    while (batch := consolidate_batch(deps, run_id, feed, claimant)) is not None:
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
    settings = deps.settings
    with deps.db.transaction() as conn:
        claimed = conn.execute(
            RAW.claim_built_or_batch,
            {"claimant": claimant, "feed": feed, "now": deps.clock.now(), "ttl_s": settings.claim_ttl_seconds,
             "limit": settings.consolidator_batch_size, "mapping_version": MAPPING_VERSION},
        ).fetchall()
    if not claimed:
        return None
    to_build = [row for row in claimed if row["payload"] is not None]
    unchanged = len(claimed) - len(to_build)
    mapped, failures = _map_claimed(to_build, feed)
    written = 0
    with deps.db.transaction() as conn:
        if to_build:
            written = _write_batch(conn, run_id, mapped)
            conn.execute(RAW.release_batch, {"ids": [r["id"] for r in to_build], "claimant": claimant})
            _record_failures(conn, run_id, feed, failures)
        conn.execute(RUNS.count_consolidated,
                     {"run_id": run_id, "consolidated": written + unchanged, "errors": len(failures)})
    return BatchResult(written + unchanged, len(failures), unchanged)


@dataclass(frozen=True, slots=True)
class _Failure:
    supplier_stone_id: str
    payload: object
    error: MappingError


def _map_claimed(rows: list[dict[str, Any]], feed: str) -> tuple[dict[tuple[str, str], tuple[Diamond, str]],
                                                                 list[_Failure]]:
    """Mapped stones keyed as `diamonds` is, each with the hash of the payload it came from; and the failures."""
    mapped: dict[tuple[str, str], tuple[Diamond, str]] = {}
    failures: list[_Failure] = []
    for row in sorted(rows, key=lambda r: r["id"]):
        item = parse_payload(row["payload"])
        result = map_nivoda_item(item, feed)
        if isinstance(result, MappingError):
            failures.append(_Failure(row["supplier_stone_id"], item, result))
        else:
            # duplicates in a batch: the latest wins
            mapped[(result.feed, result.supplier_stone_id)] = (result, row["payload_hash"])
    return mapped, failures


def _write_batch(conn: Connection, run_id: str, mapped: dict[tuple[str, str], tuple[Diamond, str]]) -> int:
    """Price and upsert the mapped stones; returns how many were written (or found already up to date)."""
    # Rules are read and applied under a share lock: a rule change (which reprices set-based) waits for
    # this batch, and this batch waits for it, so stale prices can never overwrite fresh ones. The rules'
    # version is read under the same lock, so the version a row records is the one its price came from.
    conn.execute(SQL.lock_rules)
    engine = load_pricing_engine(conn)
    version = rules_version(conn)
    rows = [to_staging_row(d, engine, run_id, BuiltFrom(payload_hash, MAPPING_VERSION, version))
            for d, payload_hash in mapped.values()]
    if rows:
        conn.execute(SQL.create_staging)
        with conn.cursor().copy(SQL.copy_staging) as copy:
            for staging_row, _priced in rows:
                copy.write_row(staging_row)
        conn.execute(SQL.upsert_from_staging)
    unpriced = sum(not priced for _row, priced in rows)
    if unpriced:
        logger.warning("diamonds matched no pricing rule", extra={"run_id": run_id, "count": unpriced})
    return len(rows)


def _record_failures(conn: Connection, run_id: str, feed: str, failures: list[_Failure]) -> None:
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
