"""The Durable orchestration of a run (read scope): what the Functions runtime reports for its instance.

Only a deployment whose runs are orchestrated has one: its PipelineControl also reads orchestration statuses
(`OrchestrationStatusReader`). Elsewhere (one machine) no run has an orchestration, so the route answers 404,
like it does for a run without one: nothing is unavailable, there is nothing to show.
"""

from __future__ import annotations

from typing import Annotated, Protocol, runtime_checkable
from uuid import UUID

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from opus.api.context import ApiContext, get_context
from opus.api.errors import ApiError
from opus.api.schemas.common import error_responses
from opus.api.security import READ

router = APIRouter(tags=["operations"], dependencies=[Depends(READ)])
Ctx = Annotated[ApiContext, Depends(get_context)]


@runtime_checkable
class OrchestrationStatusReader(Protocol):
    def orchestration_status(self, run_id: str) -> str | None:
        """The runtime status of the run's orchestration, or None when the run has none."""
        ...


class OrchestrationOut(BaseModel):
    """A run's Durable orchestration (instance id = run id) and its runtime status."""

    run_id: UUID = Field(description="The run, and the orchestration's instance id.")
    runtime_status: str = Field(description="As the Durable runtime reports it: Pending, Running, Completed, "
                                            "Failed, Terminated ...")


@router.get("/runs/{run_id}/orchestration", response_model=OrchestrationOut, responses=error_responses(404, 503),
            summary="A run's orchestration",
            description="The runtime status of the Durable orchestration that counts the run's partitions (on Azure). "
            "404 when the run has none, as every run where runs are not orchestrated (one machine).")
def orchestration(ctx: Ctx, run_id: Annotated[UUID, Path(description="The run's id.")]) -> OrchestrationOut:
    control = ctx.require_control()
    if not isinstance(control, OrchestrationStatusReader):
        raise ApiError(404, "runs are not orchestrated in this deployment")
    status = control.orchestration_status(str(run_id))
    if status is None:
        raise ApiError(404, f"run {run_id} has no orchestration")
    return OrchestrationOut(run_id=run_id, runtime_status=status)
