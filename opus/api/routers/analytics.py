"""Analytics (read scope): inventory summary, runs, suppliers, errors and alerts."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query

from opus.api.context import ApiContext, get_context
from opus.api.schemas.analytics import AlertOut, ErrorLogOut, RunDetail, RunOut, RunPage, Summary, SupplierOut
from opus.api.schemas.common import MAX_BIGINT, Digits, error_responses
from opus.api.security import READ
from opus.api.services import analytics

router = APIRouter(prefix="/analytics", tags=["analytics"], dependencies=[Depends(READ)])
Ctx = Annotated[ApiContext, Depends(get_context)]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page."), Digits]
BeforeId = Annotated[int | None,
                     Query(ge=1, le=MAX_BIGINT, description="Only items with a smaller id (paging)."), Digits]
RunFilter = Annotated[UUID | None, Query(description="Only items of this run.")]


@router.get("/summary", response_model=Summary, summary="Inventory summary",
            description="Counts by status, availability and lab-grown; price figures; the latest run.")
def summary(ctx: Ctx) -> Any:
    return analytics.summary(ctx)


@router.get("/runs", response_model=RunPage, summary="Recent runs",
            description="Pipeline runs, newest first, paged with `limit` and `offset`.")
def runs(
    ctx: Ctx, limit: Limit = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Runs to skip."), Digits] = 0,
    status: Annotated[Literal["planning", "running", "consolidating", "completed", "failed"] | None,
                      Query(description="Only runs in this state.")] = None,
) -> RunPage:
    items, next_offset = analytics.runs(ctx, limit=limit, offset=offset, status=status)
    return RunPage(items=[RunOut.model_validate(r) for r in items], next_offset=next_offset)


@router.get("/runs/{run_id}", response_model=RunDetail, responses=error_responses(404), summary="One run",
            description="A run with the progress of each of its partitions.")
def run(ctx: Ctx, run_id: Annotated[UUID, Path(description="The run's id.")]) -> Any:
    return analytics.run(ctx, run_id)


@router.get("/suppliers", response_model=list[SupplierOut], summary="Suppliers",
            description="Active stones and their value per supplier, largest value first.")
def suppliers(
    ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000, description="Suppliers to list."), Digits] = 100,
) -> Any:
    return analytics.suppliers(ctx, limit=limit)


@router.get("/errors", response_model=list[ErrorLogOut], summary="Recent pipeline errors",
            description="Records the pipeline could not use, newest first; page back with `before_id`.")
def errors(ctx: Ctx, run_id: RunFilter = None, before_id: BeforeId = None, limit: Limit = 50) -> Any:
    return analytics.errors(ctx, run_id=run_id, before_id=before_id, limit=limit)


@router.get("/alerts", response_model=list[AlertOut], summary="Recent alerts",
            description="Alerts raised by the pipeline, newest first; page back with `before_id`.")
def alerts(
    ctx: Ctx, run_id: RunFilter = None, before_id: BeforeId = None, limit: Limit = 50,
    severity: Annotated[Literal["info", "warning", "error", "critical"] | None,
                        Query(description="Only alerts of this severity.")] = None,
) -> Any:
    return analytics.alerts(ctx, severity=severity, run_id=run_id, before_id=before_id, limit=limit)
