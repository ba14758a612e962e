"""Holds, purchases and availability changes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from opus.api.schemas.common import AsText, RequestBody, Text
from opus.domain.models import Availability

Reference = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]


class HoldOut(BaseModel):
    """A hold as recorded in Opus's hold history."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Opus's id of this hold record.")
    diamond_id: int = Field(description="The stone.")
    feed_hold_id: str | None = Field(description="The feed's hold id (what a release cancels).")
    status: Literal["pending", "active", "released", "denied", "failed"] = Field(description="Hold state.")
    reason: str | None = Field(description="Why it was denied, failed or released.")
    requested_by: str | None = Field(description="The credential that asked for it.")
    held_until: datetime | None = Field(description="When the feed lets the hold lapse.")
    created_at: datetime = Field(description="When it was asked for.")
    released_at: datetime | None = Field(description="When it was released.")


class PurchaseIn(RequestBody):
    """Optional details passed to the feed's order."""

    reference: Reference | None = Field(
        default=None, description="Your order number, passed to the feed (default: the Idempotency-Key)."
    )
    comment: Text | None = Field(default=None, description="A comment passed to the feed with the order.")


class PurchaseOut(BaseModel):
    """A placed order. A repeat with the same Idempotency-Key returns this same body."""

    purchase_id: int = Field(description="Opus's id of the purchase record.")
    diamond_id: int = Field(description="The stone bought.")
    status: Literal["placed"] = Field(description="Always `placed` on success.")
    order_id: str = Field(description="The feed's order id.")
    price: str | None = Field(description="Our selling price at the time of purchase, dollars.")
    idempotency_key: str = Field(description="The key the purchase was made with.")
    reference: str | None = Field(description="The reference given, if any.")
    placed_at: datetime = Field(description="When the feed confirmed the order.")


class AvailabilityIn(RequestBody):
    """A manual availability change, recorded with its reason and the credential that made it."""

    availability: Annotated[Availability, AsText] = Field(description="The new availability.")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")] = (
        Field(description="Why, for the history (and for the holds an override ends).")
    )
    override: bool = Field(
        default=False,
        description="Change a stone that has a live hold, an open purchase, or is SOLD. Without it such a change "
        "is refused with 409 `availability_conflict`. With it, live holds are ended (cancelled at the feed, "
        "recorded as released with the admin and the reason); purchase records are left as they are.",
    )
