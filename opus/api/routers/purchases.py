"""Purchases an API process left pending (admin scope): list them, resolve one after checking the feed."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path

from opus.api.context import ApiContext, get_context
from opus.api.schemas.common import MAX_BIGINT, Digits, error_responses
from opus.api.schemas.trading import PurchaseRecord, PurchaseResolution, ResolveOrdered
from opus.api.security import ADMIN, Principal
from opus.api.services import purchases

router = APIRouter(prefix="/purchases", tags=["purchases"], dependencies=[Depends(ADMIN)])
Ctx = Annotated[ApiContext, Depends(get_context)]
PurchaseId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="Opus's id of the purchase."), Digits]


@router.get(
    "/pending", response_model=list[PurchaseRecord], summary="Purchases still pending",
    description="Purchases waiting for the feed's answer, oldest first. One pending for longer than "
    "`PURCHASE_PENDING_ALERT_S` (housekeeping alerts `purchase_pending`) lost its API process mid-order: "
    "look for its `customer_order_number` in Nivoda's orders, then resolve it.",
)
def pending(ctx: Ctx) -> Any:
    # Every pending purchase, the young ones too: an operator sees what is in flight beside what is stuck.
    return purchases.pending_purchases(ctx.db, ctx.now() + timedelta(seconds=1))


@router.post(
    "/{purchase_id}/resolve", response_model=PurchaseRecord, responses=error_responses(404, 409),
    summary="Resolve a pending purchase",
    description="Settle a purchase whose API process died before the feed's answer was stored, as an admin "
    "found it in Nivoda (Opus cannot ask: the feed has no order query and orders have no idempotency key). "
    "`ordered` records the order id and marks the stone SOLD, as the feed's confirmation would have; `failed` "
    "frees the stone. Either way the purchase's Idempotency-Key from then on answers with it: 201 and the "
    "placed order, or 502 `feed_error` with the reason. Recorded with the resolving credential. Only a "
    "`pending` purchase can be resolved: 409 otherwise.",
)
def resolve(ctx: Ctx, purchase_id: PurchaseId, resolution: Annotated[PurchaseResolution, Body()],
            principal: Annotated[Principal, Depends(ADMIN)]) -> Any:
    if isinstance(resolution, ResolveOrdered):
        found = purchases.Resolution("ordered", resolution.order_id)
    else:
        found = purchases.Resolution("failed", resolution.reason)
    return purchases.resolve_purchase(ctx.db, purchase_id, found, by=principal.id, now=ctx.now())
