"""Operator actions on runs, behind the `PipelineControl` port used by the API and the CLI."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import psycopg

from opus.db.queries import Queries
from opus.domain.models import RunStatus, RunType, WorkItem
from opus.errors import ConflictError, NotFoundError, ValidationFailed
from opus.pipeline.coordinator import settle_run
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.scheduler import schedule_run
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE, OutgoingMessage

logger = logging.getLogger(__name__)
RUNS = Queries("runs")
RAW = Queries("raw")


class LocalPipelineControl:
    """Implements PipelineControl on top of the pipeline's dependencies (any queue adapter)."""

    def __init__(self, deps: PipelineDeps) -> None:
        self._deps = deps

    def start_run(self, run_type: str, *, trigger: str) -> str:
        try:
            kind = RunType(run_type)
        except ValueError:
            raise ValidationFailed(f"run type must be 'full' or 'incremental', not {run_type!r}") from None
        return schedule_run(self._deps, kind, trigger=trigger).run_id

    def consolidate(self, run_id: str, *, force: bool = False) -> None:
        run = self._run(run_id)
        if run["status"] == RunStatus.COMPLETED and not force:
            raise ConflictError(f"run {run_id} is already completed")
        # A fresh message id: an operator's request must not be swallowed by duplicate detection.
        self._deps.queue.send(
            CONSOLIDATE_QUEUE, {"run_id": run_id, "force": force},
            message_id=f"consolidate:{run_id}:{uuid.uuid4().hex[:12]}",
        )

    def retry_partitions(self, run_id: str) -> int:
        run = self._run(run_id)
        if run["status"] != RunStatus.FAILED:
            raise ConflictError(f"run {run_id} is {run['status']}; only a failed run can be retried")
        deadline = self._deps.clock.now() + timedelta(minutes=self._deps.settings.run_deadline_minutes)
        try:
            with self._deps.db.transaction() as conn:
                conn.execute(RUNS.reopen_run, {"run_id": run_id, "deadline_at": deadline})
                resumed = conn.execute(RUNS.resume_unfinished_partitions, {"run_id": run_id}).fetchall()
        except psycopg.errors.UniqueViolation:
            raise ConflictError("another run of this feed is active") from None
        attempt = uuid.uuid4().hex[:8]
        messages = [
            # The first page's id gets a suffix: the original id is still held by duplicate detection.
            OutgoingMessage(item.to_json(), f"{item.message_id}:retry-{attempt}")
            for item in (WorkItem(run_id, r["partition"], r["next_offset"]) for r in resumed)
        ]
        self._deps.queue.send_batch(WORK_QUEUE, messages)
        if not resumed:
            # Nothing to fetch again (the run failed after fetching): let the coordinator settle it.
            settle_run(self._deps, run_id)
        logger.info("partitions retried", extra={"run_id": run_id, "partitions": len(resumed)})
        return len(resumed)

    def delete_run(self, run_id: str) -> None:
        run = self._run(run_id)
        if run["status"] != RunStatus.FAILED:
            raise ConflictError(f"run {run_id} is {run['status']}; only a failed run can be deleted")
        with self._deps.db.transaction() as conn:
            conn.execute(RAW.delete_run_raw, {"run_id": run_id})
            conn.execute(RUNS.delete_run, {"run_id": run_id})

    def _run(self, run_id: str) -> dict[str, object]:
        try:
            uuid.UUID(run_id)
        except ValueError:
            raise NotFoundError(f"no run {run_id!r}") from None
        with self._deps.db.connection() as conn:
            run = conn.execute(RUNS.get_run, {"run_id": run_id}).fetchone()
        if run is None:
            raise NotFoundError(f"no run {run_id!r}")
        return run
