"""Small shared operations on runs: failing one (with its alert), expiring overdue ones, reading state."""

from __future__ import annotations

import logging
from typing import Any

from opus.db.queries import Queries
from opus.domain.models import RunStatus
from opus.pipeline.deps import PipelineDeps

logger = logging.getLogger(__name__)
Q = Queries("runs")

ACTIVE = (RunStatus.PLANNING, RunStatus.RUNNING, RunStatus.CONSOLIDATING)


def get_run(deps: PipelineDeps, run_id: str) -> dict[str, Any] | None:
    with deps.db.connection() as conn:
        return conn.execute(Q.get_run, {"run_id": run_id}).fetchone()


def fail_run(deps: PipelineDeps, run_id: str, reason: str) -> bool:
    """Mark an active run failed and raise an alert; False if it had already ended."""
    with deps.db.transaction() as conn:
        run = conn.execute(Q.lock_run, {"run_id": run_id}).fetchone()
        if run is None or run["status"] not in ACTIVE:
            return False
        conn.execute(Q.set_run_status, {"run_id": run_id, "status": RunStatus.FAILED.value, "reason": reason})
    logger.warning("run failed", extra={"run_id": run_id, "reason": reason})
    deps.alerts.raise_alert("run_failed", f"Run {run_id} failed: {reason}", run_id=run_id)
    return True


def expire_overdue_runs(deps: PipelineDeps) -> list[str]:
    """Fail every active run past its deadline (so it no longer blocks the next one)."""
    with deps.db.connection() as conn:
        overdue = [str(r["run_id"]) for r in conn.execute(Q.overdue_runs, {"now": deps.clock.now()})]
    return [run_id for run_id in overdue if fail_run(deps, run_id, "deadline exceeded")]
