"""Plain data shared by the domain, the pipeline and the adapters. No I/O here.

Money is `Decimal` dollars with two places everywhere inside Opus; the feed's integer cents are converted once,
in mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

CENT = Decimal("0.01")


class RunType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class RunStatus(StrEnum):
    PLANNING = "planning"
    RUNNING = "running"
    CONSOLIDATING = "consolidating"
    COMPLETED = "completed"
    FAILED = "failed"


class PartitionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Availability(StrEnum):
    AVAILABLE = "AVAILABLE"
    ON_HOLD = "ON_HOLD"
    SOLD = "SOLD"
    MEMO = "MEMO"
    UNKNOWN = "UNKNOWN"


class DiamondStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Diamond:
    """A stone in Opus's canonical form, as mapped from one feed record (before pricing).

    Identity is `(feed, supplier_stone_id)`; `offer_id` is what an order names. Enums are upper case.
    Lengths are millimetres, percentages are plain numbers (62.5 means 62.5 %).
    """

    feed: str
    supplier_stone_id: str
    offer_id: str
    shape: str
    carats: Decimal
    lab_grown: bool
    feed_price: Decimal
    availability: Availability = Availability.UNKNOWN
    color: str | None = None
    clarity: str | None = None
    cut: str | None = None
    polish: str | None = None
    symmetry: str | None = None
    fluorescence: str | None = None
    fancy_color: str | None = None
    fancy_intensity: str | None = None
    fancy_overtone: str | None = None
    lab: str | None = None
    certificate_number: str | None = None
    length_mm: Decimal | None = None
    width_mm: Decimal | None = None
    depth_mm: Decimal | None = None
    depth_pct: Decimal | None = None
    table_pct: Decimal | None = None
    eye_clean: bool | None = None
    hold_id: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    certificate_url: str | None = None
    supplier_id: str | None = None
    supplier_name: str | None = None


@dataclass(frozen=True, slots=True)
class PricingRule:
    """One row of `pricing_rules`. Rules are tried in ascending `priority`; the first match wins.

    Bounds: `carat_min` and `feed_price_min` are inclusive, `carat_max` and `feed_price_max` exclusive, so
    adjacent rules such as [0.5, 1.0) and [1.0, 2.0) never both match. None means "any".
    """

    id: int
    priority: int
    markup_ratio: Decimal
    name: str = ""
    feed: str | None = None
    shapes: frozenset[str] | None = None
    carat_min: Decimal | None = None
    carat_max: Decimal | None = None
    lab_grown: bool | None = None
    feed_price_min: Decimal | None = None
    feed_price_max: Decimal | None = None
    rating: int | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class PricedDiamond:
    """A Diamond with our selling price: `price = round_cents(feed_price * markup_ratio)`."""

    diamond: Diamond
    price: Decimal
    markup_ratio: Decimal
    pricing_rule_id: int | None
    rating: int | None


@dataclass(frozen=True, slots=True)
class Partition:
    """A half-open range of whole US dollars per carat: `ppc_from <= floor(ppc) < ppc_to`."""

    index: int
    ppc_from: int
    ppc_to: int
    estimated: int


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """What one request asks the feed for: the feed's own filters, narrowed by a price-per-carat range, an
    `updated` window or stone ids."""

    ppc_from: int | None = None
    ppc_to: int | None = None  # exclusive
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    ids: tuple[str, ...] | None = None  # supplier stone ids: "which of these are still listed?"
    filters: Mapping[str, Any] | None = None  # the feed's DiamondQuery filters (FeedConfig.query)


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """A feed: a named slice of the marketplace (its DiamondQuery filters) with runs, watermark and soft-delete
    scope of its own. Configuration, not a client: every feed is read through the one Nivoda client."""

    name: str
    query: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RunPlan:
    run_id: str
    feed: str
    run_type: RunType
    updated_from: datetime | None
    updated_to: datetime
    partitions: tuple[Partition, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One message on the work queue: fetch the page at `offset` of a run's partition."""

    run_id: str
    partition: int
    offset: int

    @property
    def message_id(self) -> str:
        # The duplicate-detection key: the same page is never enqueued twice.
        return f"{self.run_id}:{self.partition}:{self.offset}"

    def to_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_json(cls, body: dict[str, object]) -> WorkItem:
        run_id, partition, offset = body.get("run_id"), body.get("partition"), body.get("offset")
        if not isinstance(run_id, str) or not isinstance(partition, int) or not isinstance(offset, int):
            raise ValueError(f"malformed work item: {body!r}")
        if partition < 0 or offset < 0:
            raise ValueError(f"malformed work item: {body!r}")
        return cls(run_id, partition, offset)


@dataclass(frozen=True, slots=True)
class ConsolidateMessage:
    """One link of a consolidation chain: work on the run for a bounded slice, then send the next link.

    `chain` tells the chains of one run apart (`CONSOLIDATOR_CONCURRENCY` of them run side by side), `seq` numbers
    the links so that a redelivered link re-sends the same next id (deduplicated), `attempt` counts retries of a
    link that failed transiently, and `tag` keeps an operator's or housekeeping's chain apart from the original.
    """

    run_id: str
    chain: int = 0
    seq: int = 0
    force: bool = False
    attempt: int = 0
    tag: str = ""

    @property
    def message_id(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        retry = f":retry-{self.attempt}" if self.attempt else ""
        return f"consolidate:{self.run_id}{tag}:{self.chain}:{self.seq}{retry}"

    def following(self) -> ConsolidateMessage:
        return ConsolidateMessage(self.run_id, self.chain, self.seq + 1, self.force, 0, self.tag)

    def retried(self) -> ConsolidateMessage:
        return ConsolidateMessage(self.run_id, self.chain, self.seq, self.force, self.attempt + 1, self.tag)

    def to_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "chain": self.chain, "seq": self.seq, "force": self.force,
                "attempt": self.attempt, "tag": self.tag}

    @classmethod
    def from_json(cls, body: dict[str, object]) -> ConsolidateMessage:
        run_id, force, tag = body.get("run_id"), body.get("force", False), body.get("tag", "")
        numbers = [body.get(k, 0) for k in ("chain", "seq", "attempt")]
        if not isinstance(run_id, str) or not isinstance(force, bool) or not isinstance(tag, str):
            raise ValueError(f"malformed consolidate message: {body!r}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise ValueError(f"malformed consolidate message: {body!r}")
        chain, seq, attempt = (int(n) for n in numbers)  # type: ignore[call-overload]
        return cls(run_id, chain, seq, force, attempt, tag)


@dataclass(frozen=True, slots=True)
class HoldResult:
    hold_id: str | None
    denied: bool
    until: datetime | None = None
    reason: str | None = None
