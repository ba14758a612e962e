"""Pipeline triggers (admin scope). Each call queues work and returns at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opus.api.context import ApiContext, get_context
from opus.api.schemas.common import error_responses
from opus.api.schemas.triggers import ConsolidateRequest, RunRef, RunRequest, RunStarted, TriggerAccepted
from opus.api.security import ADMIN, Principal

router = APIRouter(prefix="/triggers", tags=["triggers"], dependencies=[Depends(ADMIN)],
                   responses=error_responses(404, 409, 503))
Ctx = Annotated[ApiContext, Depends(get_context)]


@router.post("/run", response_model=RunStarted, status_code=202, summary="Start a run",
             description="Plan a full or incremental run and queue its work. 409 when a run is already active.")
def start_run(ctx: Ctx, request: RunRequest) -> RunStarted:
    run_id = ctx.require_control().start_run(request.type, trigger="api", feed=request.feed)
    return RunStarted(run_id=run_id, type=request.type)


@router.post("/consolidate", response_model=TriggerAccepted, status_code=202, summary="Consolidate a run",
             description="Queue consolidation of a run whose partitions all succeeded (any run with `force`).")
def consolidate(ctx: Ctx, request: ConsolidateRequest) -> TriggerAccepted:
    ctx.require_control().consolidate(str(request.run_id), force=request.force)
    return TriggerAccepted(run_id=request.run_id, action="consolidate")


@router.post("/retry-partitions", response_model=TriggerAccepted, status_code=202,
             summary="Retry failed partitions",
             description="Re-queue the failed partitions of a failed run from where they stopped.")
def retry_partitions(ctx: Ctx, request: RunRef) -> TriggerAccepted:
    count = ctx.require_control().retry_partitions(str(request.run_id))
    return TriggerAccepted(run_id=request.run_id, action="retry-partitions", partitions=count)


@router.post("/delete-run", response_model=TriggerAccepted, summary="Delete a failed run",
             description="Delete a failed run and its unconsolidated raw rows. 409 for a running or completed run.")
def delete_run(ctx: Ctx, request: RunRef) -> TriggerAccepted:
    ctx.require_control().delete_run(str(request.run_id))
    return TriggerAccepted(run_id=request.run_id, action="delete-run")


@router.post("/cancel-run", response_model=TriggerAccepted, summary="Cancel an active run",
             description="Fail a planning, running or consolidating run now, freeing its feed for the next run; "
             "its queued work is dropped and its fetched raw rows are kept. 409 for a run that has ended.")
def cancel_run(ctx: Ctx, request: RunRef, principal: Annotated[Principal, Depends(ADMIN)]) -> TriggerAccepted:
    ctx.require_control().cancel_run(str(request.run_id), by=principal.id)
    return TriggerAccepted(run_id=request.run_id, action="cancel-run")
