"""Closing a consolidated run: soft-delete what the feed confirmed gone, commit the watermark, then publish it."""

from __future__ import annotations

import logging
from typing import Any

from opus.db.pool import Connection
from opus.db.queries import Queries
from opus.domain.models import RunStatus, RunType
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import fail_run, publish_watermark

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")


def finalize(deps: PipelineDeps, run_id: str) -> str:
    """Close a consolidating run once none of its feed's rows is pending; returns the run's status afterwards.

    One transaction under the run's lock, so concurrent finalizers serialise and the counts are written once.
    The watermark is committed with the run (`run_metadata.watermark`, the truth) and published to the
    WatermarkStore only after the commit, outside the lock; a failed publish is retried by housekeeping.
    """
    with deps.db.transaction() as conn:
        run = conn.execute(RUNS.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] != RunStatus.CONSOLIDATING:
            return str(run["status"]) if run else "unknown"
        pending = conn.execute(RAW.pending_of_feed, {"feed": run["feed"], "now": deps.clock.now()}).fetchone()
        if pending and pending["pending"]:
            return str(run["status"])  # rows came back to pending (a late listing): the chain goes on
        deleted = unconfirmed = 0
        refusal = None
        if run["run_type"] == RunType.FULL:
            deleted, unconfirmed, refusal = _soft_delete_confirmed(deps, conn, run)
        if refusal is None:
            conn.execute(RUNS.complete_run, {"run_id": run_id, "watermark": run["updated_to"], "deleted": deleted,
                                             "unconfirmed": unconfirmed})
    if refusal is not None:
        fail_run(deps, run_id, refusal)
        return RunStatus.FAILED.value
    publish_watermark(deps, run["feed"], run["updated_to"])
    if unconfirmed:
        deps.alerts.raise_alert(
            "deletions_unconfirmed",
            f"Run {run_id} kept {unconfirmed} unseen stones of feed {run['feed']} live: more than "
            f"DELETE_CONFIRM_LIMIT ({deps.settings.delete_confirm_limit}) candidates could be checked with the feed. "
            "The next full run checks them again.",
            severity="warning", run_id=run_id, details={"unconfirmed": unconfirmed},
        )
    logger.info("run completed", extra={"run_id": run_id, "feed": run["feed"], "deleted": deleted,
                                        "unconfirmed": unconfirmed})
    return RunStatus.COMPLETED.value


def _soft_delete_confirmed(deps: PipelineDeps, conn: Connection, run: dict[str, Any]) -> tuple[int, int, str | None]:
    """(deleted, unconfirmed, refusal): delete only what the feed confirmed gone, and refuse implausibly many."""
    params = {"run_id": run["run_id"], "feed": run["feed"]}
    counts = conn.execute(RAW.deletion_counts, params).fetchone()
    assert counts is not None
    allowed = max(deps.settings.max_delete_fraction * counts["active"], deps.settings.max_delete_floor)
    if counts["confirmed_gone"] > allowed:
        # The feed itself says they are gone, yet a night that delists that share of a catalogue is more likely
        # a feed fault (a broken filter, an outage answering empty pages) than a sell-out.
        return 0, 0, (f"refused to soft-delete {counts['confirmed_gone']} of {counts['active']} active diamonds; "
                      "check the feed")
    deleted = conn.execute(RAW.soft_delete_confirmed, params).rowcount
    conn.execute(RAW.delete_confirmed_raw, params)
    return deleted, int(counts["unchecked"]), None
