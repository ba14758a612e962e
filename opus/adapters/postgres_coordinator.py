"""The single-machine RunCoordinator: the completion rule evaluated in PostgreSQL under the run's lock."""

from __future__ import annotations

from opus.domain.models import RunPlan
from opus.pipeline.coordinator import settle_run
from opus.pipeline.deps import PipelineDeps


class PostgresCoordinator:
    """Built on the pipeline's dependencies (which do not include it), so there is nothing to bind later."""

    def __init__(self, deps: PipelineDeps) -> None:
        self._deps = deps

    def start(self, plan: RunPlan) -> None:
        """Nothing to start: the plan's partition rows are the state this coordinator reads."""

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None:
        settle_run(self._deps, run_id)
