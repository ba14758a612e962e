"""Holds, purchases and availability changes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag, field_validator

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


Detail = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]


class ResolveOrdered(RequestBody):
    """The order is in Nivoda: settle the purchase as placed, with the order's id."""

    outcome: Literal["ordered"] = Field(description="The order reached the feed.")
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")] = Field(
        description="The order's id in Nivoda.")


class ResolveFailed(RequestBody):
    """No such order is in Nivoda: settle the purchase as failed, freeing the stone."""

    outcome: Literal["failed"] = Field(description="The order never reached the feed.")
    reason: Detail = Field(description="What was checked, for the record and the key's answer.")


def _outcome(value: Any) -> Any:
    return value.get("outcome") if isinstance(value, dict) else getattr(value, "outcome", None)


# Told apart by `outcome`, read by a function: a field discriminator would clash with RequestBody's validator.
PurchaseResolution = Annotated[
    Annotated[ResolveOrdered, Tag("ordered")] | Annotated[ResolveFailed, Tag("failed")], Discriminator(_outcome)]


class PurchaseRecord(BaseModel):
    """A purchase as recorded in Opus's purchase history."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Opus's id of the purchase record.")
    diamond_id: int = Field(description="The stone.")
    status: Literal["pending", "placed", "failed"] = Field(
        description="`pending` until the feed's answer (or an admin's resolution) is recorded.")
    feed_order_id: str | None = Field(description="The feed's order id, once placed.")
    customer_order_number: str | None = Field(
        description="What the order was sent to the feed with: the client's reference, else its Idempotency-Key. "
        "Search Nivoda's orders for it.")
    price: str | None = Field(description="Our selling price at the time of purchase, dollars.")
    requested_by: str | None = Field(description="The credential that asked for it.")
    reference: str | None = Field(description="The client's reference, if any.")
    error: str | None = Field(description="Why it failed.")
    created_at: datetime = Field(description="When it was asked for.")
    completed_at: datetime | None = Field(description="When its outcome was recorded.")
    alerted_at: datetime | None = Field(description="When housekeeping alerted that it was still pending.")
    resolved_by: str | None = Field(description="The admin credential that resolved it by hand, if one did.")

    @field_validator("price", mode="before")
    @classmethod
    def _money_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Decimal) else value


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
