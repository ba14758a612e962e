"""Stones: search and read (read scope), hold, release and purchase (trade scope), availability (admin scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Response
from starlette.concurrency import run_in_threadpool

from opus.api import jsonbody
from opus.api.context import ApiContext, get_context
from opus.api.query_model import QueryModel
from opus.api.schemas.common import MAX_BIGINT, Digits, error_responses
from opus.api.schemas.diamonds import DiamondDetail, DiamondOut, SearchPage, SearchQuery
from opus.api.schemas.trading import AvailabilityIn, HoldOut, PurchaseIn, PurchaseOut
from opus.api.security import ADMIN, READ, TRADE, Principal
from opus.api.services import diamonds, holds, purchases
from opus.api.services.search import search, search_async
from opus.domain.auth import Scope

router = APIRouter(prefix="/diamonds", tags=["diamonds"])
Ctx = Annotated[ApiContext, Depends(get_context)]
PURCHASE_CONFLICT: dict[str, Any] = {
    **error_responses(409)[409],
    "description": "`conflict`: sold, held by another client or bought with another key. `purchase_in_progress`: "
    "the first request with this Idempotency-Key is still at the feed; retry after `Retry-After` seconds.",
    "headers": {"Retry-After": {"description": "With `purchase_in_progress`: seconds to wait before retrying.",
                                "schema": {"type": "integer"}}},
}
# Printable ASCII without leading or trailing spaces: what a header can carry unchanged through proxies.
IDEMPOTENCY_KEY = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
DiamondId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="Opus's id of the stone."), Digits]
SEARCH_QUERY = QueryModel(SearchQuery)


@router.get(
    "", response_model=SearchPage, dependencies=[Depends(READ)], responses=error_responses(400),
    summary="Search stones",
    description="Filter, sort and page through stones. Pages are keyset-paginated: pass the `next` cursor of a "
    "page to get the following one, keeping the other parameters. `total_estimate` is the planner's estimate; "
    "ask `count=exact` for an exact `total`.",
)
async def search_diamonds(ctx: Ctx, query: Annotated[SearchQuery, Depends(SEARCH_QUERY)]) -> Response:
    if ctx.reads is not None:
        result = await search_async(ctx, ctx.reads, query)
    else:
        result = await run_in_threadpool(search, ctx, query)
    # Written from the rows (jsonbody): validating every stone through SearchPage cost more than the query.
    return Response(jsonbody.search_page(result, query), media_type="application/json")


@router.get(
    "/{diamond_id}", response_model=DiamondDetail, responses=error_responses(404),
    summary="Get one stone", description="One stone by Opus's id, whatever its status, with its live hold "
    "(whether the caller placed it).",
)
def get_diamond(ctx: Ctx, diamond_id: DiamondId, principal: Annotated[Principal, Depends(READ)]) -> Any:
    return diamonds.get_diamond(ctx, diamond_id, principal.id)


@router.post(
    "/{diamond_id}/hold", response_model=HoldOut, status_code=201,
    responses=error_responses(404, 409, 502, 503), summary="Hold a stone",
    description="Ask the feed to hold the stone for this credential. At most one live hold per stone: a "
    "concurrent or existing hold gives 409, and so does a hold the feed denies (with its reason).",
)
def place_hold(ctx: Ctx, diamond_id: DiamondId, principal: Annotated[Principal, Depends(TRADE)]) -> Any:
    return holds.place_hold(ctx, diamond_id, principal.id)


@router.delete(
    "/{diamond_id}/hold", response_model=HoldOut, responses=error_responses(404, 409, 502, 503),
    summary="Release a hold",
    description="Cancel the stone's active hold at the feed. Only the credential that placed it, or an admin.",
)
def release_hold(ctx: Ctx, diamond_id: DiamondId, principal: Annotated[Principal, Depends(TRADE)]) -> Any:
    return holds.release_hold(ctx, diamond_id, principal.id, is_admin=principal.scope.allows(Scope.ADMIN))


@router.post(
    "/{diamond_id}/purchase", status_code=201,
    responses={201: {"model": PurchaseOut, "description": "The order was placed."},
               **error_responses(400, 404, 409, 502, 503) | {409: PURCHASE_CONFLICT}},
    summary="Buy a stone",
    description="Order the stone through the feed. The `Idempotency-Key` header is required: a repeat with the "
    "same key (from the same credential) returns the first answer, status and body byte for byte, and places no "
    "second order, even when the repeats arrive at the same time. A repeat that arrives while the first request "
    "is still waiting for the feed waits a few seconds for its answer; if the feed is slower still, it gets 409 "
    "`purchase_in_progress` with `Retry-After` (the same answer for every such repeat): retry with the same key. "
    "A missing or malformed key is refused (422), and so is the same key for another stone. Sold stones, stones "
    "held by another client and stones another key is buying give 409 `conflict`.",
)
def purchase(
    ctx: Ctx, diamond_id: DiamondId, principal: Annotated[Principal, Depends(TRADE)],
    idempotency_key: Annotated[str, Header(
        alias="Idempotency-Key", min_length=1, max_length=purchases.MAX_KEY_LENGTH, pattern=IDEMPOTENCY_KEY,
        description="Required: a unique key per intended purchase, 1 to 200 printable ASCII characters.",
    )],
    details: Annotated[PurchaseIn | None, Body()] = None,
) -> Response:
    key = purchases.check_key(idempotency_key)
    answer = purchases.purchase(
        ctx, diamond_id, key, principal.id,
        reference=details.reference if details else None, comment=details.comment if details else None,
    )
    return Response(answer.body, status_code=answer.status, media_type="application/json")


@router.post(
    "/{diamond_id}/availability", response_model=DiamondOut, responses=error_responses(404, 409, 502, 503),
    summary="Set availability",
    description="Set the stone's availability by hand (admins only: trade keys change availability only through "
    "holds and purchases). A stone with a live hold (pending or active), an open purchase (pending or placed), "
    "or already SOLD is refused with 409 `availability_conflict`, listing what it conflicts with in `details`, "
    "unless the body says `\"override\": true`. An override ends every live hold: it is cancelled at the feed "
    "and recorded as released, with the admin and the reason; purchase records are not changed, so an order "
    "already sent to the feed may still complete and mark the stone SOLD. Every change goes to the "
    "availability history with the credential, the old and new value and the reason.",
)
def set_availability(
    ctx: Ctx, diamond_id: DiamondId, change: AvailabilityIn, principal: Annotated[Principal, Depends(ADMIN)]
) -> Any:
    return diamonds.set_availability(ctx, diamond_id, diamonds.AvailabilityChange(
        change.availability, change.reason, change.override, principal.id))

