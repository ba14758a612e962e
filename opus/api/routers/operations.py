"""Who is calling, and the operators' figures the dashboard shows (read scope)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from opus.api.context import ApiContext, get_context
from opus.api.schemas.common import Digits
from opus.api.schemas.operations import Consolidation, FeedOut, Me, Overview, RunHistoryItem, RunHistoryPage
from opus.api.security import READ, Principal
from opus.api.services import operations
from opus.feeds.catalog import FEED_NAME

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
    feed: Annotated[str | None, Query(min_length=1, max_length=63, pattern=FEED_NAME.pattern,
                                      description="Only runs of this feed.")] = None,
) -> RunHistoryPage:
    items, next_offset = operations.run_history(ctx, limit=limit, offset=offset, status=status, feed=feed)
    return RunHistoryPage(items=[RunHistoryItem.model_validate(r) for r in items], next_offset=next_offset)


@router.get("/operations/overview", response_model=Overview, tags=["operations"], dependencies=[Depends(READ)],
            summary="The pipeline at a glance",
            description="Active stones per feed (natural and lab-grown), watermarks, and the failed runs, alerts "
            "and errors of the last 24 hours (counted, and the latest failed runs and alerts listed).")
def overview(ctx: Ctx) -> Any:
    return operations.overview(ctx)


@router.get("/operations/consolidation", response_model=Consolidation, tags=["operations"],
            dependencies=[Depends(READ)], summary="Consolidation state",
            description="Raw rows waiting for consolidation, the run most recently sent to it, and per feed "
            "that feed's latest.")
def consolidation(ctx: Ctx) -> Any:
    return operations.consolidation(ctx)


@router.get("/operations/feeds", response_model=list[FeedOut], tags=["operations"], dependencies=[Depends(READ)],
            summary="The configured feeds",
            description="Every feed of FEEDS_FILE in file order, enabled or not, with its filters as configured, "
            "its latest run and its watermark.")
def feeds(ctx: Ctx) -> Any:
    return operations.feeds(ctx)
