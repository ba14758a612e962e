"""The API's PipelineControl on Azure: a RunControl per request, over the coordinator of the HTTP invocation.

The ASGI app is built once per process, but the Durable client comes with each invocation. The HTTP function sets
the invocation's coordinator in a ContextVar (`invocation_coordinator`) before handing the request to the app;
the app's route handlers run in threads that inherit the context, and this control reads it there. So
`POST /api/v2/triggers/run` starts the run's orchestration exactly as the nightly timer does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from opus.azure.durable_coordinator import DurableRunCoordinator, OrchestrationStatus
from opus.pipeline.control import RunControl
from opus.pipeline.deps import PipelineDeps

_COORDINATOR: ContextVar[DurableRunCoordinator | None] = ContextVar("opus_durable_coordinator", default=None)


class NoInvocationCoordinator(RuntimeError):
    """Pipeline control was used outside an HTTP invocation that set its coordinator: a wiring bug of ours."""


@contextmanager
def invocation_coordinator(coordinator: DurableRunCoordinator) -> Iterator[None]:
    """Make `coordinator` the one the API's control uses for the rest of this invocation (this context)."""
    token = _COORDINATOR.set(coordinator)
    try:
        yield
    finally:
        _COORDINATOR.reset(token)


class InvocationPipelineControl:
    """Implements `opus.ports.PipelineControl` (and the orchestration status read) with the invocation's coordinator."""

    def __init__(self, deps: PipelineDeps) -> None:
        self._deps = deps

    def _coordinator(self) -> DurableRunCoordinator:
        coordinator = _COORDINATOR.get()
        if coordinator is None:
            raise NoInvocationCoordinator("no Durable coordinator is set for this request")
        return coordinator

    def _control(self) -> RunControl:
        return RunControl(self._deps, self._coordinator())

    def start_run(self, run_type: str, *, trigger: str, feed: str | None = None) -> str:
        return self._control().start_run(run_type, trigger=trigger, feed=feed)

    def consolidate(self, run_id: str, *, force: bool = False) -> None:
        self._control().consolidate(run_id, force=force)

    def retry_partitions(self, run_id: str) -> int:
        return self._control().retry_partitions(run_id)

    def delete_run(self, run_id: str) -> None:
        self._control().delete_run(run_id)

    def cancel_run(self, run_id: str, *, by: str) -> None:
        self._control().cancel_run(run_id, by=by)

    def orchestration_status(self, run_id: str) -> str | None:
        """The runtime status of the run's orchestration ('Running', 'Completed' ...), None when it has none."""
        status: OrchestrationStatus | None = self._coordinator().orchestration_status(run_id)
        return None if status is None else status.value
