"""Step 4 of a run: map, price and bulk-upsert the raw rows, then close the run.

Raw rows are claimed in batches with a TTL, so several consolidators (threads or processes) share the work
and a crashed one's rows are taken over. The run is completed, and the watermark advanced, only once no
raw row is left pending: whichever consolidator finishes last closes the run.
"""

from __future__ import annotations

import logging
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from opus.db.pool import Connection
from opus.db.queries import Queries
from opus.domain.mapping import MappingError, map_nivoda_item
from opus.domain.models import Diamond, PartitionStatus, RunStatus, RunType
from opus.errors import PermanentError
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.diamond_rows import load_pricing_engine, to_staging_row
from opus.pipeline.raw_store import store_items
from opus.pipeline.runs import fail_run, get_run
from opus.ports import JSON

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")
SQL = Queries("consolidate")


@dataclass(frozen=True, slots=True)
class BatchResult:
    consolidated: int
    errors: int


def handle_consolidate(deps: PipelineDeps, body: JSON, delivery_count: int = 1) -> None:
    """Queue handler for a consolidate message `{"run_id": ..., "force": false}`."""
    run_id = body.get("run_id")
    if not isinstance(run_id, str):
        raise PermanentError(f"malformed consolidate message: {body!r}")
    consolidate_run(deps, run_id, force=bool(body.get("force", False)))


def consolidate_run(deps: PipelineDeps, run_id: str, *, force: bool = False) -> str:
    """Consolidate a run's pending rows and close it when complete. Returns the run's status afterwards."""
    run = get_run(deps, run_id)
    if run is None:
        logger.warning("consolidation of an unknown run skipped", extra={"run_id": run_id})
        return "unknown"
    complete = _all_partitions_succeeded(deps, run_id, run["partitions_total"])
    if run["status"] == RunStatus.RUNNING and complete:
        # The coordinator's commit may have been lost after it sent the message: repeat its transition.
        with deps.db.transaction() as conn:
            conn.execute(RUNS.mark_consolidating, {"run_id": run_id})
            run = conn.execute(RUNS.get_run, {"run_id": run_id}).fetchone() or run
    consolidating = run["status"] == RunStatus.CONSOLIDATING
    if not (consolidating or force):
        logger.info("consolidation not due", extra={"run_id": run_id, "status": run["status"]})
        return str(run["status"])
    drain(deps, run_id, run["feed"])
    if not consolidating:
        return str(run["status"])
    if run["run_type"] == RunType.FULL and confirm_unseen(deps, run_id, run["feed"]):
        drain(deps, run_id, run["feed"])
    return finalize(deps, run_id)


def confirm_unseen(deps: PipelineDeps, run_id: str, feed: str) -> int:
    """Ask the feed about the stones a full run did not see before they are soft-deleted.

    Paging by offset is not a snapshot: a stone repriced into a range already paged, or shifted by a removal
    ahead of it, is missed although still listed. Each candidate still listed is stored as seen (and
    consolidated); the rest are gone. Beyond `delete_confirm_limit` candidates nothing is asked: that many
    misses point at the feed, and the deletion guard in `finalize` decides. Returns how many were still listed.
    """
    limit = deps.settings.delete_confirm_limit
    with deps.db.connection() as conn:
        candidates = [r["supplier_stone_id"] for r in conn.execute(
            RAW.unseen_active, {"run_id": run_id, "feed": feed, "limit": limit + 1})]
    if not candidates or len(candidates) > limit:
        return 0
    listed = [item for item in (deps.feed.get(stone_id) for stone_id in candidates) if item is not None]
    if listed:
        store_items(deps.db, run_id, feed, listed, full_run=True)
        logger.info("unseen stones still listed", extra={"run_id": run_id, "count": len(listed)})
    return len(listed)


def drain(deps: PipelineDeps, run_id: str, feed: str) -> BatchResult:
    """Consolidate pending raw rows with `consolidator_concurrency` claimants until none is left."""
    workers = deps.settings.consolidator_concurrency
    base = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="consolidate") as pool:
        results = list(pool.map(lambda i: _drain_one(deps, run_id, feed, f"{base}:{i}"), range(workers)))
    return BatchResult(sum(r.consolidated for r in results), sum(r.errors for r in results))


def _drain_one(deps: PipelineDeps, run_id: str, feed: str, claimant: str) -> BatchResult:
    consolidated = errors = 0
    while True:
        result = consolidate_batch(deps, run_id, feed, claimant)
        if result is None:
            return BatchResult(consolidated, errors)
        consolidated += result.consolidated
        errors += result.errors


def consolidate_batch(deps: PipelineDeps, run_id: str, feed: str, claimant: str) -> BatchResult | None:
    """Claim, map, price and upsert one batch; None when nothing was left to claim."""
    settings = deps.settings
    with deps.db.transaction() as conn:
        claimed = conn.execute(
            RAW.claim_batch,
            {"claimant": claimant, "ttl_s": settings.claim_ttl_seconds, "limit": settings.consolidator_batch_size},
        ).fetchall()
    if not claimed:
        return None
    mapped: dict[tuple[str, str], Diamond] = {}
    failures: list[tuple[dict[str, object], MappingError]] = []
    for row in sorted(claimed, key=lambda r: r["id"]):
        result = map_nivoda_item(row["payload"], feed)
        if isinstance(result, MappingError):
            failures.append((row, result))
        else:
            mapped[(result.feed, result.supplier_stone_id)] = result  # duplicates in a batch: the latest wins
    with deps.db.transaction() as conn:
        # Rules are read and applied under a share lock: a rule change (which reprices set-based) waits for
        # this batch, and this batch waits for it, so stale prices can never overwrite fresh ones.
        conn.execute(SQL.lock_rules)
        engine = load_pricing_engine(conn)
        rows = [to_staging_row(d, engine, run_id) for d in mapped.values()]
        conn.execute(SQL.create_staging)
        with conn.cursor().copy(SQL.copy_staging) as copy:
            for staging_row, _priced in rows:
                copy.write_row(staging_row)
        conn.execute(SQL.upsert_from_staging)
        conn.execute(RAW.release_batch, {"ids": [r["id"] for r in claimed], "claimant": claimant})
        for row, error in failures:
            conn.execute(
                RUNS.insert_error,
                {"run_id": run_id, "feed": feed, "source": "mapping", "supplier_stone_id": row["supplier_stone_id"],
                 "field": error.field, "message": str(error), "payload": Jsonb(row["payload"])},
            )
        conn.execute(RUNS.count_consolidated, {"run_id": run_id, "consolidated": len(rows), "errors": len(failures)})
    unpriced = sum(not priced for _row, priced in rows)
    if unpriced:
        logger.warning("diamonds matched no pricing rule", extra={"run_id": run_id, "count": unpriced})
    return BatchResult(len(rows), len(failures))


def finalize(deps: PipelineDeps, run_id: str) -> str:
    """Close a consolidating run once no raw row is pending: soft-delete, watermark, completed.

    One transaction under the run's lock, so concurrent finalizers serialise and the run's counts are
    written once. The watermark moves inside it: if that write fails, the soft-deletes roll back too and the
    run stays `consolidating` for the redelivered message to close.
    """
    with deps.db.transaction() as conn:
        run = conn.execute(RUNS.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] != RunStatus.CONSOLIDATING:
            return str(run["status"]) if run else "unknown"
        pending = conn.execute(RAW.pending_left).fetchone()
        if pending and pending["n"]:
            return str(run["status"])  # another consolidator still holds rows; it closes the run
        deleted, refusal = 0, None
        if run["run_type"] == RunType.FULL:
            deleted, refusal = _soft_delete_unseen(deps, conn, run)
        if refusal is None:
            deps.watermarks.advance(run["feed"], run["updated_to"])
            conn.execute(RUNS.complete_run, {"run_id": run_id, "watermark": run["updated_to"], "deleted": deleted})
    if refusal is not None:
        fail_run(deps, run_id, refusal)
        return RunStatus.FAILED.value
    logger.info("run completed", extra={"run_id": run_id, "deleted": deleted})
    return RunStatus.COMPLETED.value


def _soft_delete_unseen(deps: PipelineDeps, conn: Connection, run: dict[str, Any]) -> tuple[int, str | None]:
    """Soft-delete the feed's stones a full run did not see; refuse when that would be implausibly many."""
    params = {"run_id": run["run_id"], "feed": run["feed"]}
    counts = conn.execute(RAW.count_unseen, params).fetchone() or {"active": 0, "unseen": 0}
    allowed = max(deps.settings.max_delete_fraction * counts["active"], deps.settings.max_delete_floor)
    if counts["unseen"] > allowed:
        # A full run that saw far fewer stones than we list is more likely a feed fault than a sell-out.
        return 0, f"refused to soft-delete {counts['unseen']} of {counts['active']} active diamonds; check the feed"
    deleted = conn.execute(RAW.soft_delete_unseen, params).rowcount
    conn.execute(RAW.delete_unseen_raw, params)
    return deleted, None


def _all_partitions_succeeded(deps: PipelineDeps, run_id: str, total: int) -> bool:
    with deps.db.connection() as conn:
        states = {r["status"]: r["n"] for r in conn.execute(RUNS.partition_states, {"run_id": run_id})}
    return total > 0 and states.get(PartitionStatus.SUCCEEDED, 0) == total
