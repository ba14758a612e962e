"""Operators' figures: who is calling, run history with totals, and the pipeline at a glance."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from opus.api.schemas.analytics import RunOut

RECENT_ITEMS = 10  # failed runs and alerts listed on the overview: more than that and the counts tell the story


class Me(BaseModel):
    """The credential making the request, so a client can offer only what its scope allows."""

    name: str = Field(description="The key's name, or the HMAC client id.")
    scope: Literal["read", "trade", "admin"] = Field(description="What the credential may do.")


class RunHistoryItem(RunOut):
    """One run with the totals of its partitions."""

    partitions_failed: int = Field(description="Partitions that failed.")
    pages: int = Field(description="Pages stored, all partitions.")
    rows_fetched: int = Field(description="Rows read from the feed.")
    rows_written: int = Field(description="Rows whose payload changed.")
    duration_s: float = Field(description="Seconds from start to end (to now while it is active).")


class RunHistoryPage(BaseModel):
    """Runs, newest first."""

    items: list[RunHistoryItem] = Field(description="Runs.")
    next_offset: int | None = Field(description="`offset` of the next page; null on the last page.")


class FeedInventory(BaseModel):
    """Active stones of one feed, natural or lab-grown."""

    feed: str = Field(description="The feed.")
    lab_grown: bool = Field(description="Lab-grown (true) or natural (false).")
    stones: int = Field(description="Active stones.")


class Watermark(BaseModel):
    """How far a feed has been ingested."""

    feed: str = Field(description="The feed.")
    value: datetime = Field(description="Changes up to this instant are in the catalogue.")
    updated_at: datetime = Field(description="When it last advanced.")


class FailedRun(BaseModel):
    """A run that failed."""

    run_id: UUID = Field(description="The run.")
    feed: str = Field(description="Its feed.")
    run_type: str = Field(description="`full` or `incremental`.")
    started_at: datetime = Field(description="When it started.")
    failure_reason: str | None = Field(description="Why it failed.")


class RecentAlert(BaseModel):
    """An alert, in brief (the full record is at `/analytics/alerts`)."""

    id: int = Field(description="The alert's id.")
    kind: str = Field(description="Kind of alert.")
    severity: str = Field(description="info, warning, error or critical.")
    message: str = Field(description="What happened.")
    run_id: UUID | None = Field(description="The run concerned.")
    created_at: datetime = Field(description="When it was raised.")


class RecentTrouble(BaseModel):
    """What went wrong since `since`."""

    since: datetime = Field(description="Start of the window (24 hours ago).")
    failed_runs: int = Field(description="Runs started in the window that failed.")
    alerts: int = Field(description="Alerts raised in the window.")
    errors: int = Field(description="Records the pipeline could not use, recorded in the window.")
    failed_run_items: list[FailedRun] = Field(
        description=f"The failed runs of the window, newest first (at most {RECENT_ITEMS}).")
    alert_items: list[RecentAlert] = Field(
        description=f"The alerts of the window, newest first (at most {RECENT_ITEMS}).")


class Overview(BaseModel):
    """The pipeline at a glance."""

    inventory: list[FeedInventory] = Field(description="Active stones per feed, natural and lab-grown.")
    watermarks: list[Watermark] = Field(description="Every feed's watermark.")
    last_24h: RecentTrouble = Field(description="Failures, alerts and errors of the last 24 hours.")


class ConsolidationRun(BaseModel):
    """The run most recently sent to consolidation."""

    model_config = ConfigDict(from_attributes=True)

    run_id: UUID = Field(description="The run.")
    feed: str = Field(description="Its feed.")
    run_type: str = Field(description="`full` or `incremental`.")
    status: str = Field(description="Its state: consolidating, completed or failed.")
    consolidated: int = Field(description="Stones written to the catalogue.")
    errors: int = Field(description="Records that could not be mapped.")
    deleted: int = Field(description="Stones soft-deleted.")
    consolidation_enqueued_at: datetime = Field(description="When consolidation was queued.")
    finished_at: datetime | None = Field(description="When the run ended.")


class Consolidation(BaseModel):
    """Consolidation now: the raw rows waiting and the latest run consolidated."""

    pending_rows: int = Field(description="Raw rows waiting to be consolidated.")
    claimed_rows: int = Field(description="Of those, rows a consolidator is working on now.")
    latest: ConsolidationRun | None = Field(description="The run most recently sent to consolidation.")
    by_feed: list[ConsolidationRun] = Field(
        description="Per feed, the run of that feed most recently sent to consolidation, by feed name.")


class FeedLatestRun(BaseModel):
    """A feed's most recent run."""

    run_id: UUID = Field(description="The run.")
    run_type: str = Field(description="`full` or `incremental`.")
    status: str = Field(description="planning, running, consolidating, completed or failed.")
    started_at: datetime = Field(description="Start.")
    finished_at: datetime | None = Field(description="End.")


class FeedOut(BaseModel):
    """A configured feed (FEEDS_FILE): its filters, its latest run and its watermark."""

    name: str = Field(description="The feed's name, as runs, stones and pricing rules name it.")
    enabled: bool = Field(description="Whether scheduled runs include it; only enabled feeds can be run.")
    query: dict[str, Any] = Field(
        description="Its DiamondQuery filters as configured (nivoda-api.md); each run adds `updated` and the "
        "partitions their `dollar_per_carat` range within these.")
    latest_run: FeedLatestRun | None = Field(description="Its most recent run; null if it never ran.")
    watermark: datetime | None = Field(description="Changes up to this instant are in the catalogue; null "
                                       "before its first completed run.")
