"""Pricing rules: what a client sends and what it gets back."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from opus.api.schemas.common import (
    MAX_INT,
    Carats,
    FilterToken,
    Markup,
    Money,
    PositiveCarats,
    PositiveMoney,
    RequestBody,
)

Name = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class PricingRuleIn(RequestBody):
    """A rule. Unset criteria match anything; ranges are `min <= value < max`. Rules are tried by ascending
    priority and the first match prices the stone: `price = round_half_up(feed_price * markup_ratio, cents)`."""

    name: Name = Field(default="", description="For people.")
    priority: int = Field(ge=0, le=MAX_INT, description="Lower is tried first; unique across rules.")
    feed: FilterToken | None = Field(default=None, description="Only stones of this feed.")
    shapes: list[FilterToken] | None = Field(default=None, min_length=1, max_length=50,
                                             description="Only these shapes (upper case is applied).")
    carat_min: Carats | None = Field(default=None, description="Carats from (inclusive).")
    carat_max: PositiveCarats | None = Field(default=None, description="Carats below (exclusive); above zero.")
    lab_grown: bool | None = Field(default=None, description="Only lab-grown (true) or natural (false) stones.")
    feed_price_min: Money | None = Field(default=None, description="Feed price from (inclusive), dollars.")
    feed_price_max: PositiveMoney | None = Field(default=None,
                                                 description="Feed price below (exclusive), dollars; above zero.")
    markup_ratio: Markup = Field(description="Selling price = feed price times this, e.g. 1.25.")
    rating: int | None = Field(default=None, ge=-MAX_INT, le=MAX_INT, description="Copied to the stones it prices.")
    active: bool = Field(default=True, description="Inactive rules price nothing.")

    @field_validator("shapes")
    @classmethod
    def _upper(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        return list(dict.fromkeys(" ".join(v.split()).upper() for v in values))


class PricingRuleOut(BaseModel):
    """A stored rule."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The rule's id.")
    name: str = Field(description="For people.")
    priority: int = Field(description="Lower is tried first.")
    feed: str | None = Field(description="Only stones of this feed.")
    shapes: list[str] | None = Field(description="Only these shapes.")
    carat_min: Decimal | None = Field(description="Carats from (inclusive).")
    carat_max: Decimal | None = Field(description="Carats below (exclusive).")
    lab_grown: bool | None = Field(description="Lab-grown only (true), natural only (false).")
    feed_price_min: Decimal | None = Field(description="Feed price from (inclusive).")
    feed_price_max: Decimal | None = Field(description="Feed price below (exclusive).")
    markup_ratio: Decimal = Field(description="Multiplier on the feed price.")
    rating: int | None = Field(description="Copied to the stones it prices.")
    active: bool = Field(description="Whether it prices anything.")
    created_at: datetime = Field(description="Created.")
    updated_at: datetime = Field(description="Last changed.")


class RuleChanged(BaseModel):
    """A created or replaced rule and how many stones changed price, rule or markup as a result."""

    rule: PricingRuleOut = Field(description="The rule as stored.")
    repriced: int = Field(description="Active stones rewritten by the repricing.")


class RuleDeleted(BaseModel):
    """A deleted rule and how many stones were repriced as a result."""

    id: int = Field(description="The deleted rule's id.")
    repriced: int = Field(description="Active stones rewritten by the repricing.")
