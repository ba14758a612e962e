"""Before a full run soft-deletes anything: ask the feed which of the stones it did not see are still listed.

Paging by offset is not a snapshot. A stone repriced while the run pages moves past the run's `updated` bound
and drops out of the listing; every stone after it shifts back one place and the next page skips one. So "not
seen" proves nothing. Each candidate is looked up with the feed's listing itself, by id and without the `updated`
bound (`ids` filter, 50 to a page, paged until an empty page because short pages happen mid-range). A stone the
listing returns is stored as seen and consolidated (or, when its record cannot be stored, marked seen and stale);
only a stone it does not return is recorded as confirmed gone, and only those are soft-deleted. Beyond
`DELETE_CONFIRM_LIMIT` candidates per run nothing more is asked: the rest stay live and are reported, never deleted
on inference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opus.db.queries import Queries
from opus.domain.models import FeedQuery
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.raw_store import stone_id_of, store_items
from opus.pipeline.scheduler import feed_query_of
from opus.ports import JSON

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")

LOOKUP_BATCH = 50  # Nivoda's page limit: one request answers for up to 50 stones
CHUNK = 400  # candidates taken per step, looked up LOOKUP_BATCH at a time
PARALLEL_LOOKUPS = 4  # requests in flight; the client's rate limiter still spaces them


@dataclass(frozen=True, slots=True)
class ConfirmStep:
    still_listed: int  # candidates the feed still lists and that were stored: to consolidate before the run closes
    gone: int  # candidates the feed confirmed gone
    more: bool  # candidates left to ask about (the slice ran out of time)


def confirm_unseen(deps: PipelineDeps, run: dict[str, Any], deadline: float) -> ConfirmStep:
    """Look up unseen stones until none is left, the per-run limit is reached, or the slice's deadline passes."""
    run_id, feed = str(run["run_id"]), str(run["feed"])
    checked = int(run["candidates_checked"])  # the run as this slice read it: only chain 0 changes the count
    if checked == 0:
        with deps.db.transaction() as conn:  # once per run, before the first look for candidates
            conn.execute(RAW.analyze_for_deletions)
    budget = deps.settings.delete_confirm_limit - checked
    listed_total = gone_total = 0
    after = ""  # candidates come in stone id order: each is asked about once per slice
    while budget > 0:
        if time.monotonic() >= deadline:
            return ConfirmStep(listed_total, gone_total, more=True)
        with deps.db.connection() as conn:
            candidates = [str(r["supplier_stone_id"]) for r in conn.execute(
                RAW.unchecked_candidates,
                {"run_id": run_id, "feed": feed, "after": after, "limit": min(budget, CHUNK)})]
        if not candidates:
            break
        after = candidates[-1]
        listed = still_listed(deps, candidates, filters=feed_query_of(run))
        # Only what was stored needs a consolidation: a record that could not be stored was marked instead, and
        # another slice for it would ask about it again.
        stored = store_items(deps.db, run_id, feed, listed, full_run=True) if listed else 0
        listed_ids = {stone_id_of(item) for item in listed}
        gone = [c for c in candidates if c not in listed_ids]
        with deps.db.transaction() as conn:
            conn.execute(RAW.record_confirmed_gone, {"run_id": run_id, "feed": feed, "stone_ids": gone})
            conn.execute(RUNS.count_checked_candidates, {"run_id": run_id, "checked": len(candidates)})
        listed_total += stored
        gone_total += len(gone)
        budget -= len(candidates)
    if listed_total or gone_total:
        logger.info("unseen stones looked up", extra={"run_id": run_id, "still_listed": listed_total,
                                                      "gone": gone_total})
    return ConfirmStep(listed_total, gone_total, more=False)


def still_listed(deps: PipelineDeps, stone_ids: list[str], *, filters: Mapping[str, Any] | None = None) -> list[JSON]:
    """The records the feed's listing (its run's filters) still returns for these stones (the others are gone)."""
    batches = [tuple(stone_ids[i:i + LOOKUP_BATCH]) for i in range(0, len(stone_ids), LOOKUP_BATCH)]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_LOOKUPS, len(batches)), thread_name_prefix="lookup") as pool:
        found = list(pool.map(lambda batch: _lookup(deps, batch, filters), batches))
    return [item for items in found for item in items]


def _lookup(deps: PipelineDeps, ids: tuple[str, ...], filters: Mapping[str, Any] | None) -> list[JSON]:
    wanted = set(ids)
    # The feed's own filters, as the run stored them: a stone that left the feed's slice (now lab-grown, say)
    # is gone from this feed even if the marketplace still lists it.
    query = FeedQuery(ids=ids, filters=filters)
    items: dict[str, JSON] = {}
    offset = 0
    # At most one page per id plus one: a listing that keeps answering past that is not answering about these ids.
    for _ in range(len(ids) + 1):
        page = deps.feed.page(query, offset, LOOKUP_BATCH)
        if not page:
            break
        for item in page:
            stone_id = stone_id_of(item)
            if stone_id in wanted:
                items[stone_id] = item
        offset += len(page)
    return list(items.values())
