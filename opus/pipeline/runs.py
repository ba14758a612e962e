"""Small shared operations on runs: reading one, failing one (with its alert), freeing the feed of dead ones,
publishing the committed watermark."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from opus.db.queries import Queries
from opus.domain.models import RunStatus
from opus.pipeline.deps import PipelineDeps

logger = logging.getLogger(__name__)
RUNS = Queries("runs")

ACTIVE = (RunStatus.PLANNING, RunStatus.RUNNING, RunStatus.CONSOLIDATING)


def get_run(deps: PipelineDeps, run_id: str) -> dict[str, Any] | None:
    with deps.db.connection() as conn:
        return conn.execute(RUNS.get_run, {"run_id": run_id}).fetchone()


def active_run(deps: PipelineDeps, feed: str) -> dict[str, Any] | None:
    """The feed's active run (at most one: a unique index says so), or None."""
    with deps.db.connection() as conn:
        return conn.execute(RUNS.active_run_of_feed, {"feed": feed}).fetchone()


def fail_run(deps: PipelineDeps, run_id: str, reason: str) -> bool:
    """Mark an active run failed and raise an alert; False if it had already ended."""
    with deps.db.transaction() as conn:
        run = conn.execute(RUNS.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] not in ACTIVE:
            return False
        conn.execute(RUNS.set_run_status, {"run_id": run_id, "status": RunStatus.FAILED.value, "reason": reason})
    logger.warning("run failed", extra={"run_id": run_id, "feed": run["feed"], "reason": reason})
    deps.alerts.raise_alert("run_failed", f"Run {run_id} failed: {reason}", run_id=run_id)
    return True


def expire_overdue_runs(deps: PipelineDeps) -> list[str]:
    """Fail every active run past its deadline (so it no longer blocks the next one)."""
    with deps.db.connection() as conn:
        overdue = [str(r["run_id"]) for r in conn.execute(RUNS.overdue_runs, {"now": deps.clock.now()})]
    return [run_id for run_id in overdue if fail_run(deps, run_id, "deadline exceeded")]


def planning_stale_before(deps: PipelineDeps) -> datetime:
    return deps.clock.now() - timedelta(seconds=deps.settings.planning_timeout_s)


def fail_abandoned_planning(deps: PipelineDeps) -> list[str]:
    """Fail planning runs whose planner stopped beating: killed while it scanned the feed."""
    timeout = deps.settings.planning_timeout_s
    with deps.db.connection() as conn:
        stale = [str(r["run_id"]) for r in conn.execute(
            RUNS.abandoned_planning, {"stale_before": planning_stale_before(deps)})]
    reason = f"planning abandoned: the planner sent no heartbeat for {timeout} s (it was stopped or crashed)"
    return [run_id for run_id in stale if fail_run(deps, run_id, reason)]


def publish_watermark(deps: PipelineDeps, feed: str, value: datetime) -> bool:
    """Publish a committed watermark to the WatermarkStore; a failure is logged and left to housekeeping.

    The run's row is the truth and is committed first; the store only ever lags it, which costs the next
    incremental run a longer window, never a lost change.
    """
    try:
        deps.watermarks.advance(feed, value)
    except Exception as exc:  # any backend's failure: the truth is safe, housekeeping publishes again
        logger.warning("watermark not published; housekeeping will retry",
                       extra={"feed": feed, "watermark": value.isoformat(), "error": str(exc)})
        return False
    return True


def committed_watermark(deps: PipelineDeps, feed: str) -> datetime | None:
    with deps.db.connection() as conn:
        row = conn.execute(RUNS.committed_watermark, {"feed": feed}).fetchone()
    value: datetime | None = row["value"] if row else None
    return value


def incremental_start(deps: PipelineDeps, feed: str) -> datetime | None:
    """Where an incremental run starts (before the buffer): the published watermark, never past the committed one.

    Two copies of one fact, and which wins: the committed value in `run_metadata` is the truth; the published
    store may lag it (a failed publish), and a lagging store only makes the window longer. A store ahead of the
    truth (restored database, hand edit) is not believed.
    """
    truth = committed_watermark(deps, feed)
    if truth is None:
        return None
    published = deps.watermarks.get(feed)
    return truth if published is None else min(published, truth)
