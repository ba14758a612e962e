"""Buying a stone exactly once per Idempotency-Key.

The feed has no idempotency key of its own, so ours is the only guard against double orders. A 'pending'
purchase row is written before the feed is called, under the key's unique constraint and the one-open-purchase-
per-stone index; the feed's answer (success or failure) is stored with the exact HTTP response, which is what a
repeated request with the same key gets back. Keys are scoped to the credential that sent them, so two clients
choosing the same key do not collide.

Repeats that arrive while the first request is still at the feed wait for its answer (ReplayWait: polled,
outside any transaction) and return it byte for byte; one that outwaits it gets the one documented
`purchase_in_progress` 409 with Retry-After.

A purchase whose process died before the feed's answer was stored stays pending: Nivoda can be neither asked
about an order nor sent one idempotently, so Opus cannot settle it by itself, and ordering again could buy the
stone twice. Housekeeping alerts about it after `PURCHASE_PENDING_ALERT_S`; an admin who checked Nivoda (the
order carries the `customer_order_number` recorded with the purchase) resolves it (`resolve_purchase`), and the
key's repeats then get that resolution as their answer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from psycopg import errors as pg_errors

from opus.api.context import ApiContext, ReplayWait
from opus.api.errors import ApiError, error_body, status_for
from opus.api.services.holds import check_tradable, expire_stale
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.models import Availability
from opus.errors import ConflictError, FeedPermanentError, FeedTransientError, NotFoundError
from opus.ports import Feed

log = logging.getLogger(__name__)
Q = Queries("api_trading")
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class PurchaseAnswer:
    status: int
    body: str  # JSON, exactly as first sent

    @classmethod
    def of(cls, status: int, body: dict[str, Any]) -> PurchaseAnswer:
        return cls(status, json.dumps(body, separators=(",", ":"), ensure_ascii=False))


def _scoped(principal_id: str, key: str) -> str:
    return f"{principal_id}|{key}"


def _unscoped(scoped_key: str, principal_id: str) -> str:
    return scoped_key.removeprefix(f"{principal_id}|")


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiError(400, "a purchase needs an Idempotency-Key header", code="idempotency_key_required")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(400, f"Idempotency-Key must be printable and at most {MAX_KEY_LENGTH} characters",
                       code="idempotency_key_invalid")
    return key


@dataclass(frozen=True, slots=True)
class _Claimed:
    """This request's pending purchase row: it, and only it, calls the feed."""

    purchase_id: int
    offer_id: str
    price: Decimal | None
    customer_order_number: str


def _by_key(ctx: ApiContext, scoped_key: str) -> dict[str, Any] | None:
    with ctx.db.connection() as conn:
        return conn.execute(Q.purchase_by_key, {"key": scoped_key}).fetchone()


def _in_progress(wait: ReplayWait) -> ApiError:
    # The same words and header for every such request, so that repeats cannot tell each other apart.
    return ApiError(
        409, "a purchase with this Idempotency-Key is still waiting for the feed; retry with the same key after "
        "Retry-After seconds to get its answer", code="purchase_in_progress",
        headers={"Retry-After": str(wait.retry_after_s)},
    )


def _first_answer(ctx: ApiContext, row: dict[str, Any], diamond_id: int, key: str, scoped_key: str) -> PurchaseAnswer:
    """The answer of the request that first used the key, waiting a little while it is still at the feed."""
    if int(row["diamond_id"]) != diamond_id:
        # 422, as the IETF Idempotency-Key draft answers a key reused for another request.
        raise ApiError(
            422, f"Idempotency-Key {key!r} was already used to buy diamond {row['diamond_id']}; use a new key",
            code="idempotency_key_reused",
        )
    wait = ctx.replay_wait
    deadline = time.monotonic() + wait.timeout_s
    current: dict[str, Any] | None = row
    while current is not None and current["response_status"] is None:
        if time.monotonic() >= deadline:
            raise _in_progress(wait)
        time.sleep(wait.poll_s)  # between short reads: no connection or transaction is held while waiting
        current = _by_key(ctx, scoped_key)
    assert current is not None, "purchase rows are never deleted"
    return PurchaseAnswer(int(current["response_status"]), str(current["response_body"]))


def _claim(ctx: ApiContext, diamond_id: int, scoped_key: str, requested_by: str,
           reference: str | None) -> _Claimed | dict[str, Any]:
    """Write this request's pending row; or, when the key is already in use, return that purchase's row."""
    now = ctx.now()
    with ctx.db.transaction() as conn:
        # Lock order: the stone first (see holds.py). The key is looked up again under the lock, before the
        # stone's state: a request with the same key that got here first has committed its pending row (or even
        # sold the stone), and this one is its repeat, to be given its answer, not another buyer's refusal.
        stone = conn.execute(Q.lock_diamond, {"id": diamond_id}).fetchone()
        existing = conn.execute(Q.purchase_by_key, {"key": scoped_key}).fetchone()
        if existing is not None:
            return existing
        stone = check_tradable(diamond_id, stone)
        expire_stale(conn, diamond_id, now)
        if stone["price"] is None:
            raise ConflictError(f"diamond {diamond_id} has no price (no pricing rule matches it)")
        hold = conn.execute(Q.live_hold, {"diamond_id": diamond_id}).fetchone()
        if hold is not None and hold["requested_by"] != requested_by:
            raise ConflictError(f"diamond {diamond_id} is held by another client")
        if conn.execute(Q.open_purchase, {"diamond_id": diamond_id}).fetchone() is not None:
            raise ConflictError(f"diamond {diamond_id} is already being purchased")
        order_number = reference or _unscoped(scoped_key, requested_by)
        row = conn.execute(Q.insert_pending_purchase, {
            "diamond_id": diamond_id, "key": scoped_key, "price": stone["price"], "requested_by": requested_by,
            "reference": reference, "customer_order_number": order_number, "now": now,
        }).fetchone()
    assert row is not None
    return _Claimed(int(row["id"]), str(stone["offer_id"]), stone["price"], order_number)


def purchase(ctx: ApiContext, diamond_id: int, key: str, requested_by: str, *,
             reference: str | None = None, comment: str | None = None) -> PurchaseAnswer:
    """Order the stone through the feed once per (credential, key); a repeat gets the first answer."""
    feed = ctx.require_feed()
    scoped = _scoped(requested_by, key)
    existing = _by_key(ctx, scoped)
    if existing is None:
        try:
            claimed = _claim(ctx, diamond_id, scoped, requested_by, reference)
        except pg_errors.UniqueViolation as exc:
            # The same key at the same moment for another stone (a different stone's lock did not serialise us).
            existing = _by_key(ctx, scoped)
            if existing is None:
                raise ConflictError(f"diamond {diamond_id} is already being purchased") from exc
        else:
            if isinstance(claimed, _Claimed):
                return _order(ctx, feed, diamond_id, claimed, key, requested_by, reference, comment)
            existing = claimed
    return _first_answer(ctx, existing, diamond_id, key, scoped)


def _order(ctx: ApiContext, feed: Feed, diamond_id: int, claimed: _Claimed, key: str, requested_by: str,
           reference: str | None, comment: str | None) -> PurchaseAnswer:
    purchase_id = claimed.purchase_id
    try:
        order_id = feed.order(claimed.offer_id, reference=claimed.customer_order_number, comment=comment)
    except (FeedTransientError, FeedPermanentError) as exc:
        status, code = status_for(exc)
        answer = PurchaseAnswer.of(status, error_body(code, f"the feed did not confirm the order: {exc}"))
        with ctx.db.transaction() as conn:
            conn.execute(Q.lock_diamond, {"id": diamond_id})
            recorded = _record(conn, purchase_id, "failed", answer, now=ctx.now(), error=str(exc)[:500])
        return answer if recorded else _resolved_meanwhile(ctx, purchase_id, None)
    now = ctx.now()
    answer = _placed(purchase_id, diamond_id, order_id, claimed.price, key, reference, now)
    with ctx.db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})  # lock order: the stone first (see holds.py)
        recorded = _record(conn, purchase_id, "placed", answer, order_id=order_id, now=now)
        if recorded:
            _mark_sold(conn, diamond_id, order_id, now, changed_by=requested_by,
                       reason=f"purchased, order {order_id}")
    if not recorded:
        return _resolved_meanwhile(ctx, purchase_id, order_id)
    log.info("purchase placed", extra={"diamond_id": diamond_id, "purchase_id": purchase_id})
    return answer


def _placed(purchase_id: int, diamond_id: int, order_id: str, price: Decimal | None, key: str,
            reference: str | None, placed_at: datetime) -> PurchaseAnswer:
    return PurchaseAnswer.of(201, {
        "purchase_id": purchase_id, "diamond_id": diamond_id, "status": "placed", "order_id": order_id,
        "price": None if price is None else str(price), "idempotency_key": key,
        "reference": reference, "placed_at": placed_at.isoformat(),
    })


def _mark_sold(conn: Any, diamond_id: int, order_id: str, now: datetime, *, changed_by: str, reason: str) -> None:
    conn.execute(Q.release_active_holds, {"diamond_id": diamond_id, "now": now, "reason": "purchased"})
    conn.execute(Q.set_availability, {
        "id": diamond_id, "availability": Availability.SOLD.value, "set_hold_id": True, "hold_id": None,
        "now": now, "changed_by": changed_by, "reason": reason,
    })


def _record(conn: Any, purchase_id: int, status: str, answer: PurchaseAnswer, *, now: datetime,
            order_id: str | None = None, error: str | None = None, resolved_by: str | None = None) -> bool:
    """Store the purchase's outcome and answer; False when it was no longer pending (an operator resolved it)."""
    row = conn.execute(Q.finish_purchase, {
        "id": purchase_id, "status": status, "feed_order_id": order_id, "error": error, "now": now,
        "response_status": answer.status, "response_body": answer.body, "resolved_by": resolved_by,
    }).fetchone()
    return row is not None


def _resolved_meanwhile(ctx: ApiContext, purchase_id: int, order_id: str | None) -> PurchaseAnswer:
    """The feed answered after an operator had resolved the purchase: the key keeps one answer, the
    operator's; a feed order the resolution did not expect is logged for reconciling by hand."""
    with ctx.db.connection() as conn:
        row = conn.execute(Q.purchase_by_id, {"id": purchase_id}).fetchone()
    assert row is not None, "purchase rows are never deleted"
    log.error("a resolved purchase got a late answer from the feed", extra={
        "purchase_id": purchase_id, "resolved_as": row["status"], "feed_order_id": order_id,
        "resolved_order_id": row["feed_order_id"]})
    return PurchaseAnswer(int(row["response_status"]), str(row["response_body"]))


# --- purchases orphaned by a dead process -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Resolution:
    """What an admin found at the feed: the order exists (`order_id`), or it does not (`reason`)."""

    outcome: Literal["ordered", "failed"]
    detail: str  # the feed's order id, or why the order was not placed


def pending_purchases(db: Database, before: datetime) -> list[dict[str, Any]]:
    """Purchases still pending that started before `before`, oldest first, with what finds them in Nivoda."""
    with db.connection() as conn:
        return conn.execute(Q.pending_purchases, {"before": before}).fetchall()


def resolve_purchase(db: Database, purchase_id: int, resolution: Resolution, *, by: str,
                     now: datetime) -> dict[str, Any]:
    """Settle a pending purchase as an admin found it at the feed; ConflictError unless it is pending.

    "ordered" does what the feed's confirmation would have done (the stone SOLD, its holds released, the key's
    answer the 201 of a placed order); "failed" frees the stone, and the key's answer is the failure.
    """
    with db.connection() as conn:
        row = conn.execute(Q.purchase_by_id, {"id": purchase_id}).fetchone()
    if row is None:
        raise NotFoundError(f"no purchase {purchase_id}")
    diamond_id = int(row["diamond_id"])
    with db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})  # lock order: the stone first (see holds.py)
        # Read again under the lock: every path that finishes a purchase takes it first, so this is final.
        row = conn.execute(Q.purchase_by_id, {"id": purchase_id}).fetchone()
        assert row is not None, "purchase rows are never deleted"
        if row["status"] != "pending":
            raise ConflictError(f"purchase {purchase_id} is {row['status']}: only a pending purchase can be resolved")
        if resolution.outcome == "ordered":
            key = _unscoped(str(row["idempotency_key"]), str(row["requested_by"]))
            answer = _placed(purchase_id, diamond_id, resolution.detail, row["price"], key, row["reference"], now)
            resolved = _record(conn, purchase_id, "placed", answer, order_id=resolution.detail, now=now,
                               resolved_by=by)
            if resolved:
                _mark_sold(conn, diamond_id, resolution.detail, now, changed_by=by,
                           reason=f"purchased, order {resolution.detail} (purchase {purchase_id} resolved by hand)")
        else:
            answer = PurchaseAnswer.of(502, error_body(
                "feed_error", f"the order was not placed (checked at the feed by an operator): {resolution.detail}"))
            resolved = _record(conn, purchase_id, "failed", answer, error=resolution.detail[:500], now=now,
                               resolved_by=by)
        assert resolved, "pending under the stone's lock"
        current = conn.execute(Q.purchase_by_id, {"id": purchase_id}).fetchone()
    log.warning("purchase resolved by hand", extra={"purchase_id": purchase_id, "outcome": resolution.outcome,
                                                    "resolved_by": by})
    assert current is not None
    return current
