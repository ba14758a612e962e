"""Step 3 of a run: decide, from `partition_progress` alone, whether a run consolidates or fails.

`settle_run` is the one rule. The local RunCoordinator calls it on each partition completion, the Durable
orchestrator's activity once every partition has reported, and housekeeping for runs whose announcements were
lost. A run consolidates only when its stored plan covers the whole price-per-carat axis and every partition of it
succeeded: a run without a plan (killed while planning) can never complete, so it can never move the watermark past
changes it did not fetch.
"""

from __future__ import annotations

import itertools
import logging
from enum import StrEnum
from typing import Any

from opus.db.queries import Queries
from opus.domain.heatmap import AXIS_MAX, AXIS_MIN
from opus.domain.models import ConsolidateMessage, PartitionStatus, RunStatus
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import fail_run
from opus.ports import CONSOLIDATE_QUEUE, OutgoingMessage

logger = logging.getLogger(__name__)
RUNS = Queries("runs")


class Settlement(StrEnum):
    WAITING = "waiting"  # partitions still running
    CONSOLIDATING = "consolidating"  # consolidation chains enqueued (again, harmlessly, if they already were)
    FAILED = "failed"  # a partition failed: the run failed, nothing is consolidated, the watermark stays
    ENDED = "ended"  # the run had already ended (or does not exist)


def settle_run(deps: PipelineDeps, run_id: str) -> Settlement:
    """Evaluate a run under its row lock.

    The consolidate messages are sent after the lock is released (holding a pooled connection while asking the
    pool for another can starve it). A crash in between is repaired by the next call: a redelivered work item or
    housekeeping settles the run again, finds it `consolidating` and sends again; the message ids make that a
    no-op if the first send got through.
    """
    with deps.db.transaction() as conn:
        run = conn.execute(RUNS.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] not in (RunStatus.RUNNING, RunStatus.CONSOLIDATING):
            return Settlement.ENDED
        if run["status"] == RunStatus.RUNNING:
            partitions = conn.execute(RUNS.partitions_of_run, {"run_id": run_id}).fetchall()
            if any(p["status"] == PartitionStatus.FAILED for p in partitions):
                outcome = Settlement.FAILED
            elif not plan_covered(run, partitions):
                return Settlement.WAITING
            else:
                marked = conn.execute(RUNS.mark_consolidating, {"run_id": run_id, "now": deps.clock.now()})
                assert marked.rowcount == 1, "the run is locked and running"
                outcome = Settlement.CONSOLIDATING
        else:
            outcome = Settlement.CONSOLIDATING
    if outcome is Settlement.FAILED:
        fail_run(deps, run_id, "one or more partitions failed")
        return outcome
    start_consolidation(deps, run_id)
    return outcome


def plan_covered(run: dict[str, Any], partitions: list[dict[str, Any]]) -> bool:
    """True when the run has a stored plan whose partitions all succeeded and tile the whole axis."""
    if run["plan"] is None or not partitions or len(partitions) != run["partitions_total"]:
        return False
    if any(p["status"] != PartitionStatus.SUCCEEDED for p in partitions):
        return False
    ranges = sorted((p["ppc_from"], p["ppc_to"]) for p in partitions)
    contiguous = all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    return contiguous and ranges[0][0] == AXIS_MIN and ranges[-1][1] == AXIS_MAX


def start_consolidation(deps: PipelineDeps, run_id: str, *, force: bool = False, tag: str = "") -> None:
    """Enqueue the first link of each consolidation chain (deterministic ids: a repeat is a no-op)."""
    chains = deps.settings.consolidator_concurrency
    messages = [ConsolidateMessage(run_id, chain, 0, force, 0, tag) for chain in range(chains)]
    deps.queue.send_batch(CONSOLIDATE_QUEUE, [OutgoingMessage(m.to_json(), m.message_id) for m in messages])
    logger.info("consolidation enqueued", extra={"run_id": run_id, "chains": chains, "force": force})
