"""The single-machine RunCoordinator: the completion rule evaluated in PostgreSQL under the run's lock."""

from __future__ import annotations

from opus.domain.models import RunPlan
from opus.pipeline.coordinator import settle_run
from opus.pipeline.deps import PipelineDeps


class PostgresCoordinator:
    """Needs the rest of the pipeline's dependencies, so it is bound after they are built (`bind`)."""

    def __init__(self) -> None:
        self._deps: PipelineDeps | None = None

    def bind(self, deps: PipelineDeps) -> None:
        self._deps = deps

    def start(self, plan: RunPlan) -> None:
        """Nothing to start: the plan's partition rows are the state this coordinator reads."""

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None:
        if self._deps is None:
            raise RuntimeError("PostgresCoordinator used before bind()")
        settle_run(self._deps, run_id)
