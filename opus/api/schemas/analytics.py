"""Read-only figures: inventory summary, runs and their partitions, suppliers, errors and alerts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class RunOut(BaseModel):
    """One pipeline run."""

    model_config = ConfigDict(from_attributes=True)

    run_id: UUID = Field(description="The run's id.")
    feed: str = Field(description="The feed it ingests.")
    run_type: str = Field(description="`full` or `incremental`.")
    status: str = Field(description="planning, running, consolidating, completed or failed.")
    trigger: str = Field(description="What started it: schedule, api, cli...")
    updated_from: datetime | None = Field(description="Start of the feed's `updated` window (none: full run).")
    updated_to: datetime = Field(description="End of the window, fixed at start.")
    partitions_total: int = Field(description="Number of partitions planned.")
    consolidated: int = Field(description="Stones written to the catalogue.")
    deleted: int = Field(description="Stones soft-deleted (full runs): only those the feed confirmed gone.")
    unconfirmed: int = Field(description="Unseen stones a full run could not check with the feed: kept live.")
    errors: int = Field(description="Records that could not be used (unmappable, or without a stone id).")
    watermark: datetime | None = Field(description="The watermark the run advanced to.")
    failure_reason: str | None = Field(description="Why it failed.")
    deadline_at: datetime = Field(description="When it fails if not finished.")
    started_at: datetime = Field(description="Start.")
    finished_at: datetime | None = Field(description="End.")


class PartitionOut(BaseModel):
    """Progress of one partition of a run."""

    model_config = ConfigDict(from_attributes=True)

    partition: int = Field(description="Index within the run.")
    ppc_from: int = Field(description="Lower price-per-carat bound, inclusive.")
    ppc_to: int = Field(description="Upper price-per-carat bound, exclusive.")
    estimated: int = Field(description="Stones the plan expected.")
    next_offset: int = Field(description="Feed offset of the next page.")
    pages: int = Field(description="Pages stored.")
    rows_fetched: int = Field(description="Rows read from the feed.")
    rows_written: int = Field(description="Rows whose payload changed.")
    status: str = Field(description="pending, running, succeeded or failed.")
    error: str | None = Field(description="Why the partition failed.")
    attempts: int = Field(description="Failed tries of the current page (reset when a page is stored).")
    last_error: str | None = Field(description="The error of the latest failed try.")
    started_at: datetime | None = Field(description="Start.")
    finished_at: datetime | None = Field(description="End.")
    updated_at: datetime = Field(description="Last progress.")


class RunDetail(RunOut):
    """A run with the progress of each partition."""

    partitions: list[PartitionOut] = Field(description="Partitions in order.")


class RunPage(BaseModel):
    """Recent runs, newest first."""

    items: list[RunOut] = Field(description="Runs.")
    next_offset: int | None = Field(description="`offset` of the next page; null on the last page.")


class PriceStats(BaseModel):
    """Selling-price figures over active stones, dollars."""

    priced: int = Field(description="Active stones with a price.")
    unpriced: int = Field(description="Active stones no rule prices.")
    min: Decimal | None = Field(description="Lowest price.")
    max: Decimal | None = Field(description="Highest price.")
    avg: Decimal | None = Field(description="Mean price.")
    median: Decimal | None = Field(description="Median price.")
    total_value: Decimal = Field(description="Sum of prices.")


class Summary(BaseModel):
    """The inventory at a glance."""

    by_status: dict[str, int] = Field(description="Stones per listing status.")
    by_availability: dict[str, int] = Field(description="Active stones per availability.")
    by_lab_grown: dict[str, int] = Field(description="Active stones, natural (`false`) and lab-grown (`true`).")
    prices: PriceStats = Field(description="Price figures.")
    stale_records: int = Field(
        description="Active stones whose latest feed record could not be used: they keep their last good data "
        "(see `GET /analytics/errors` for why)."
    )
    last_run: RunOut | None = Field(description="The most recently started run.")


class SupplierOut(BaseModel):
    """Stones and value of one supplier (active stones)."""

    supplier_name: str = Field(description="Supplier name; empty when the feed gave none.")
    stones: int = Field(description="Active stones.")
    total_value: Decimal = Field(description="Sum of selling prices.")
    total_feed_value: Decimal = Field(description="Sum of feed prices.")
    avg_price: Decimal | None = Field(description="Mean selling price.")


class ErrorLogOut(BaseModel):
    """A record the pipeline could not use."""

    id: int = Field(description="Id; pass as `before_id` to page back.")
    run_id: UUID | None = Field(description="The run.")
    feed: str | None = Field(description="The feed.")
    source: str = Field(description="Where it arose (mapping, consolidation...).")
    supplier_stone_id: str | None = Field(description="The stone, when known.")
    field: str | None = Field(description="The field at fault, when known.")
    message: str = Field(description="What was wrong.")
    created_at: datetime = Field(description="When.")


class AlertOut(BaseModel):
    """An alert raised by the pipeline."""

    id: int = Field(description="Id; pass as `before_id` to page back.")
    kind: str = Field(description="Kind of alert.")
    severity: str = Field(description="info, warning, error or critical.")
    message: str = Field(description="What happened.")
    run_id: UUID | None = Field(description="The run concerned.")
    details: Any = Field(description="Structured details (any JSON value).")
    created_at: datetime = Field(description="Raised.")
    delivered_at: datetime | None = Field(description="E-mailed.")
    acknowledged_at: datetime | None = Field(description="Acknowledged.")
