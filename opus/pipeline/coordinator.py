"""Step 3 of a run: decide, from `partition_progress` alone, whether a run consolidates or fails.

`settle_run` is the one rule, shared by every RunCoordinator adapter: the local one calls it on each
partition completion, the Durable orchestrator once every partition has reported.
"""

from __future__ import annotations

import logging

from opus.db.queries import Queries
from opus.domain.models import PartitionStatus, RunStatus
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import fail_run
from opus.ports import CONSOLIDATE_QUEUE

logger = logging.getLogger(__name__)
Q = Queries("runs")


def consolidate_message_id(run_id: str) -> str:
    return f"consolidate:{run_id}"


def settle_run(deps: PipelineDeps, run_id: str) -> str:
    """Evaluate a run under its row lock; returns 'waiting', 'consolidating', 'failed' or 'ended'.

    The consolidate message is sent after the lock is released (holding a pooled connection while asking the
    pool for another can starve it). A crash in between is repaired by the next call: a redelivered work item
    settles the run again, finds it `consolidating` and sends again; the message id makes that a no-op if the
    first send got through.
    """
    with deps.db.transaction() as conn:
        run = conn.execute(Q.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] not in (RunStatus.RUNNING, RunStatus.CONSOLIDATING):
            return "ended"
        if run["status"] == RunStatus.RUNNING:
            states = {r["status"]: r["n"] for r in conn.execute(Q.partition_states, {"run_id": run_id})}
            if states.get(PartitionStatus.FAILED, 0):
                outcome = "failed"
            elif states.get(PartitionStatus.SUCCEEDED, 0) < run["partitions_total"]:
                return "waiting"
            else:
                conn.execute(Q.mark_consolidating, {"run_id": run_id})
                outcome = "consolidating"
        else:
            outcome = "consolidating"
    if outcome == "failed":
        fail_run(deps, run_id, "one or more partitions failed")
        return outcome
    deps.queue.send(CONSOLIDATE_QUEUE, {"run_id": run_id}, message_id=consolidate_message_id(run_id))
    logger.info("consolidation enqueued", extra={"run_id": run_id})
    return outcome
