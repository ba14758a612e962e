"""Stones: the public record, the search parameters and the search page."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opus.api.schemas.common import Carats, Digits, FilterToken, Money
from opus.domain.models import Availability


class DiamondOut(BaseModel):
    """One stone as Opus serves it. Money is US dollars as a decimal string with two places."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Opus's id of the stone.")
    feed: str = Field(description="The feed it comes from, e.g. `nivoda`.")
    supplier_stone_id: str = Field(description="The feed's stone id (used for holds).")
    offer_id: str = Field(description="The feed's offer id (used for orders).")
    shape: str = Field(description="Upper case, e.g. ROUND.")
    carats: Decimal = Field(description="Weight in carats.")
    color: str | None = Field(description="D..Z, a range such as M-N, or FANCY.")
    clarity: str | None = Field(description="FL, IF, VVS1 ... I3.")
    cut: str | None = Field(description="IDEAL, EXCELLENT, VERY_GOOD, GOOD, FAIR, POOR.")
    polish: str | None = Field(description="Same grades as cut.")
    symmetry: str | None = Field(description="Same grades as cut.")
    fluorescence: str | None = Field(description="NONE, FAINT, MEDIUM, STRONG, VERY_STRONG.")
    fancy_color: str | None = Field(description="For fancy-coloured stones.")
    fancy_intensity: str | None = Field(description="For fancy-coloured stones.")
    fancy_overtone: str | None = Field(description="For fancy-coloured stones.")
    lab: str | None = Field(description="Grading laboratory, e.g. GIA.")
    certificate_number: str | None = Field(description="The laboratory's certificate number.")
    lab_grown: bool = Field(description="True for laboratory-grown stones.")
    length_mm: Decimal | None = Field(description="Millimetres.")
    width_mm: Decimal | None = Field(description="Millimetres.")
    depth_mm: Decimal | None = Field(description="Millimetres.")
    depth_pct: Decimal | None = Field(description="Percent.")
    table_pct: Decimal | None = Field(description="Percent.")
    eye_clean: bool | None = Field(description="Whether inclusions are invisible to the naked eye.")
    availability: Availability = Field(description="AVAILABLE, ON_HOLD, SOLD, MEMO or UNKNOWN.")
    hold_id: str | None = Field(description="The feed's hold id while the stone is on hold.")
    image_url: str | None = Field(description="Image.")
    video_url: str | None = Field(description="Video.")
    certificate_url: str | None = Field(description="Certificate document.")
    supplier_id: str | None = Field(description="The supplier's id at the feed.")
    supplier_name: str | None = Field(description="The supplier's name.")
    feed_price: Decimal = Field(description="The feed's price (our cost), dollars.")
    price: Decimal | None = Field(description="Our selling price, dollars; null when no pricing rule matches.")
    markup_ratio: Decimal | None = Field(description="The markup of the rule that priced it.")
    pricing_rule_id: int | None = Field(description="The rule that priced it.")
    rating: int | None = Field(description="The rating of the rule that priced it.")
    price_per_carat: Decimal | None = Field(description="Selling price per carat, dollars.")
    status: Literal["active", "deleted"] = Field(description="`deleted` once the feed stopped listing it.")
    created_at: datetime = Field(description="First stored.")
    updated_at: datetime = Field(description="Last changed.")
    deleted_at: datetime | None = Field(description="When it stopped being listed.")


DIAMOND_FIELDS: tuple[str, ...] = tuple(DiamondOut.model_fields)


class HoldState(BaseModel):
    """The live hold placed on a stone through Opus, seen by the caller."""

    mine: bool = Field(description="Whether the calling credential placed it: only its holder may buy the stone, "
                       "and only its holder or an admin may cancel it.")
    status: Literal["pending", "active"] = Field(description="`pending` while the feed is placing it.")
    held_until: datetime | None = Field(description="When the feed lets it lapse, if the feed said.")


class DiamondDetail(DiamondOut):
    """One stone, with the live hold on it (the search's items leave it out)."""

    hold: HoldState | None = Field(description="The live hold placed through Opus; null when there is none "
                                   "(a stone ON_HOLD without one is held outside Opus).")


class SortKey(StrEnum):
    """What search results are ordered by; `color` and `clarity` follow grade order (D first, FL first)."""

    PRICE = "price"
    CARATS = "carats"
    PRICE_PER_CARAT = "price_per_carat"
    COLOR = "color"
    CLARITY = "clarity"
    UPDATED = "updated"


class SortOrder(StrEnum):
    """Sort direction: `asc` (smallest or best grade first) or `desc`."""

    ASC = "asc"
    DESC = "desc"


def _split(values: list[str]) -> list[str]:
    # "ROUND,OVAL" and repeated parameters mean the same; values are stored upper case, single-spaced.
    out = [" ".join(part.split()).upper() for value in values for part in value.split(",")]
    return list(dict.fromkeys(v for v in out if v))


# (minimum, maximum) filter pairs; both ends are inclusive, so only min > max is an empty, mistaken range.
RANGES = (("carat_min", "carat_max"), ("price_min", "price_max"), ("feed_price_min", "feed_price_max"))
_LIST = "Repeat the parameter or give a comma list; matches any of the values (case-insensitive)."


class SearchQuery(BaseModel):
    """Search filters. Ranges are inclusive at both ends. Only priced stones are listed."""

    model_config = ConfigDict(extra="forbid")

    shapes: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Shapes. {_LIST}")
    carat_min: Carats | None = Field(default=None, description="Minimum carats.")
    carat_max: Carats | None = Field(default=None, description="Maximum carats.")
    colors: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Colours. {_LIST}")
    clarities: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Clarities. {_LIST}")
    cuts: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Cut grades. {_LIST}")
    polish: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Polish grades. {_LIST}")
    symmetry: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Symmetry. {_LIST}")
    fluorescence: list[FilterToken] = Field(default_factory=list, max_length=50,
                                            description=f"Fluorescence. {_LIST}")
    labs: list[FilterToken] = Field(default_factory=list, max_length=50, description=f"Grading labs. {_LIST}")
    lab_grown: bool | None = Field(default=None, description="true: lab-grown only; false: natural only.")
    price_min: Money | None = Field(default=None, description="Minimum selling price, dollars.")
    price_max: Money | None = Field(default=None, description="Maximum selling price, dollars.")
    feed_price_min: Money | None = Field(default=None, description="Minimum feed price, dollars.")
    feed_price_max: Money | None = Field(default=None, description="Maximum feed price, dollars.")
    feed: FilterToken | None = Field(default=None, description="Only stones of this feed, e.g. nivoda.")
    availability: list[FilterToken] = Field(
        default_factory=list, max_length=10, description=f"AVAILABLE, ON_HOLD, SOLD, MEMO, UNKNOWN. {_LIST}",
        # The values are an enum: the document says so, and anything else is a 422.
        json_schema_extra={"items": {"type": "string", "enum": [a.value for a in Availability]}},
    )
    status: Literal["active", "deleted", "all"] = Field(default="active", description="Listing status.")
    sort: SortKey = Field(
        default=SortKey.PRICE,
        description="Sort key. `color` and `clarity` sort by grade (asc: D first, FL first), not alphabetically.",
    )
    order: SortOrder = Field(default=SortOrder.ASC, description="Sort direction.")
    limit: Annotated[int, Digits] = Field(default=20, ge=1, le=100, description="Stones per page.")
    next: str | None = Field(default=None, max_length=512,
                             description="The `next` cursor of the previous page; keep the other parameters.")
    count: Literal["estimate", "exact"] = Field(
        default="estimate", description="`exact` adds an exact `total` (slower on large result sets)."
    )

    @field_validator("shapes", "colors", "clarities", "cuts", "polish", "symmetry", "fluorescence", "labs")
    @classmethod
    def _normalise(cls, values: list[str]) -> list[str]:
        return _split(values)

    @field_validator("availability")
    @classmethod
    def _availability(cls, values: list[str]) -> list[str]:
        out = [v.replace(" ", "_") for v in _split(values)]
        unknown = [v for v in out if v not in Availability.__members__]
        if unknown:
            raise ValueError(f"unknown availability {', '.join(unknown)}; use {', '.join(Availability)}")
        return out

    @model_validator(mode="after")
    def _ranges_in_order(self) -> SearchQuery:
        # A reversed range matches nothing: answering an empty page would hide the caller's mistake.
        bounds = [(low, getattr(self, low), high, getattr(self, high)) for low, high in RANGES]
        reversed_ranges = [
            f"{low} ({low_value}) is greater than {high} ({high_value})"
            for low, low_value, high, high_value in bounds
            if low_value is not None and high_value is not None and low_value > high_value
        ]
        if reversed_ranges:
            raise ValueError("; ".join(reversed_ranges))
        return self


class SearchPage(BaseModel):
    """One page of search results."""

    items: list[DiamondOut] = Field(description="The stones of this page, in the requested order.")
    next: str | None = Field(description="Cursor of the following page; null on the last page.")
    limit: int = Field(description="The page size used.")
    sort: SortKey = Field(description="The sort key used.")
    order: SortOrder = Field(description="The sort direction used.")
    total_estimate: int = Field(description="The planner's estimate of all matches (cheap, approximate).")
    total: int | None = Field(description="The exact number of matches, only when `count=exact` was asked.")
