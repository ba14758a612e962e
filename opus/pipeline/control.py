"""Operator actions on runs, behind the `PipelineControl` port used by the API and the CLI, on any runtime."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import psycopg

from opus.db.queries import Queries
from opus.domain.models import ConsolidateMessage, RunPlan, RunStatus, RunType, WorkItem
from opus.errors import ConflictError, NotFoundError, ValidationFailed
from opus.feeds.catalog import enabled_feeds
from opus.pipeline.coordinator import settle_run
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.runs import ACTIVE, fail_run
from opus.pipeline.scheduler import plan_run, schedule_run
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE, OutgoingMessage, RunCoordinator

logger = logging.getLogger(__name__)
RUNS = Queries("runs")
RAW = Queries("raw")


class RunControl:
    """Implements PipelineControl on the pipeline's dependencies and the runtime's RunCoordinator."""

    def __init__(self, deps: PipelineDeps, coordinator: RunCoordinator) -> None:
        self._deps = deps
        self._coordinator = coordinator

    def start_run(self, run_type: str, *, trigger: str, feed: str | None = None) -> str:
        try:
            kind = RunType(run_type)
        except ValueError:
            raise ValidationFailed(f"run type must be 'full' or 'incremental', not {run_type!r}") from None
        config = None
        if feed is not None:
            named = {f.name: f for f in enabled_feeds(self._deps.settings.feeds)}
            if feed not in named:
                raise NotFoundError(f"no enabled feed {feed!r}; enabled: {', '.join(sorted(named))}")
            config = named[feed]
        return schedule_run(self._deps, self._coordinator, kind, trigger=trigger, feed=config).run_id

    def consolidate(self, run_id: str, *, force: bool = False) -> None:
        run = self._run(run_id)
        if run["status"] == RunStatus.COMPLETED and not force:
            raise ConflictError(f"run {run_id} is already completed")
        # A tag of its own: an operator's request must not be swallowed by duplicate detection.
        message = ConsolidateMessage(run_id, 0, 0, force, 0, f"operator-{uuid.uuid4().hex[:8]}")
        self._deps.queue.send(CONSOLIDATE_QUEUE, message.to_json(), message_id=message.message_id)

    def retry_partitions(self, run_id: str) -> int:
        """Resume a failed run: its unfinished partitions from where they stopped, or a new plan if it had none."""
        run = self._run(run_id)
        if run["status"] != RunStatus.FAILED:
            raise ConflictError(f"run {run_id} is {run['status']}; only a failed run can be retried")
        deadline = self._deps.clock.now() + timedelta(minutes=self._deps.settings.run_deadline_minutes)
        try:
            with self._deps.db.transaction() as conn:
                reopened = conn.execute(RUNS.reopen_run, {"run_id": run_id, "deadline_at": deadline,
                                                          "now": self._deps.clock.now()}).fetchone()
                resumed = [] if reopened is None or reopened["status"] == RunStatus.PLANNING else conn.execute(
                    RUNS.resume_unfinished_partitions, {"run_id": run_id}).fetchall()
        except psycopg.errors.UniqueViolation:
            raise ConflictError("another run of this feed is active") from None
        if reopened is not None and reopened["status"] == RunStatus.PLANNING:
            # Killed while planning: it never stored a plan, so nothing of its window was fetched. Plan it now.
            plan = plan_run(self._deps, self._coordinator, run_id)
            logger.info("run re-planned", extra={"run_id": run_id, "partitions": len(plan.partitions)})
            return len(plan.partitions)
        partitions = tuple(int(r["partition"]) for r in resumed)
        self._coordinator.start(_plan_of(run, partitions))
        attempt = uuid.uuid4().hex[:8]
        messages = [
            # The first page's id gets a suffix: the original id is still held by duplicate detection.
            OutgoingMessage(item.to_json(), f"{item.message_id}:retry-{attempt}")
            for item in (WorkItem(run_id, r["partition"], r["next_offset"]) for r in resumed)
        ]
        self._deps.queue.send_batch(WORK_QUEUE, messages)
        if not resumed:
            # Nothing to fetch again (the run failed after fetching): let the coordinator rule settle it.
            settle_run(self._deps, run_id)
        logger.info("partitions retried", extra={"run_id": run_id, "partitions": len(resumed)})
        return len(resumed)

    def cancel_run(self, run_id: str, *, by: str) -> None:
        """Fail an active run now; its queued messages are dropped when they arrive, its raw rows kept."""
        run = self._run(run_id)
        if run["status"] not in ACTIVE:
            raise ConflictError(f"run {run_id} is {run['status']}; only an active run can be cancelled")
        if not fail_run(self._deps, run_id, f"cancelled by {by}"):
            raise ConflictError(f"run {run_id} ended before it could be cancelled")

    def delete_run(self, run_id: str) -> None:
        run = self._run(run_id)
        if run["status"] != RunStatus.FAILED:
            raise ConflictError(f"run {run_id} is {run['status']}; only a failed run can be deleted")
        with self._deps.db.transaction() as conn:
            conn.execute(RAW.delete_run_raw, {"run_id": run_id})
            conn.execute(RUNS.delete_run, {"run_id": run_id})

    def _run(self, run_id: str) -> dict[str, Any]:
        try:
            uuid.UUID(run_id)
        except ValueError:
            raise NotFoundError(f"no run {run_id!r}") from None
        with self._deps.db.connection() as conn:
            run = conn.execute(RUNS.get_run, {"run_id": run_id}).fetchone()
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run


def _plan_of(run: dict[str, Any], partitions: tuple[int, ...]) -> RunPlan:
    """A RunPlan naming only the partitions being resumed (what a Durable orchestration waits for)."""
    from opus.domain.models import Partition

    stored = {p["index"]: p for p in (run["plan"] or {}).get("partitions", [])}
    chosen = tuple(
        Partition(i, stored[i]["ppc_from"], stored[i]["ppc_to"], stored[i]["estimated"]) for i in partitions
        if i in stored
    )
    return RunPlan(str(run["run_id"]), run["feed"], RunType(run["run_type"]), run["updated_from"], run["updated_to"],
                   chosen)
