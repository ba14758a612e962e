"""Who is calling, and the operators' figures the dashboard shows (read scope)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from opus.api.context import ApiContext, get_context
from opus.api.schemas.common import Digits
from opus.api.schemas.operations import Consolidation, Me, Overview, RunHistoryItem, RunHistoryPage
from opus.api.security import READ, Principal
from opus.api.services import operations

router = APIRouter()
Ctx = Annotated[ApiContext, Depends(get_context)]


@router.get("/me", response_model=Me, tags=["operations"], summary="The calling credential",
            description="The name and scope of the credential that signs this request.")
def me(principal: Annotated[Principal, Depends(READ)]) -> Me:
    return Me(name=principal.name, scope=principal.scope.value)


@router.get("/operations/runs", response_model=RunHistoryPage, tags=["operations"], dependencies=[Depends(READ)],
            summary="Run history with totals",
            description="Runs, newest first, each with its partitions' pages and rows and its duration.")
def run_history(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=100, description="Runs per page."), Digits] = 30,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Runs to skip."), Digits] = 0,
    status: Annotated[Literal["planning", "running", "consolidating", "completed", "failed"] | None,
                      Query(description="Only runs in this state.")] = None,
) -> RunHistoryPage:
    items, next_offset = operations.run_history(ctx, limit=limit, offset=offset, status=status)
    return RunHistoryPage(items=[RunHistoryItem.model_validate(r) for r in items], next_offset=next_offset)


@router.get("/operations/overview", response_model=Overview, tags=["operations"], dependencies=[Depends(READ)],
            summary="The pipeline at a glance",
            description="Active stones per feed (natural and lab-grown), watermarks, and the failed runs, alerts "
            "and errors of the last 24 hours.")
def overview(ctx: Ctx) -> Any:
    return operations.overview(ctx)


@router.get("/operations/consolidation", response_model=Consolidation, tags=["operations"],
            dependencies=[Depends(READ)], summary="Consolidation state",
            description="Raw rows waiting for consolidation and the run most recently sent to it.")
def consolidation(ctx: Ctx) -> Any:
    return operations.consolidation(ctx)
