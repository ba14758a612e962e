"""Buying a stone exactly once per Idempotency-Key.

The feed has no idempotency key of its own, so ours is the only guard against double orders. A 'pending'
purchase row is written before the feed is called, under the key's unique constraint and the one-open-purchase-
per-stone index; the feed's answer (success or failure) is stored with the exact HTTP response, which is what a
repeated request with the same key gets back. Keys are scoped to the credential that sent them, so two clients
choosing the same key do not collide.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors

from opus.api.context import ApiContext
from opus.api.errors import ApiError, error_body, status_for
from opus.api.services.holds import expire_stale, lock_stone
from opus.db.queries import Queries
from opus.domain.models import Availability
from opus.errors import ConflictError, FeedPermanentError, FeedTransientError, ValidationFailed

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


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiError(400, "a purchase needs an Idempotency-Key header", code="idempotency_key_required")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(400, f"Idempotency-Key must be printable and at most {MAX_KEY_LENGTH} characters",
                       code="idempotency_key_invalid")
    return key


def _replay(row: dict[str, Any], diamond_id: int, key: str) -> PurchaseAnswer:
    if int(row["diamond_id"]) != diamond_id:
        raise ValidationFailed(
            f"Idempotency-Key {key!r} was already used to buy diamond {row['diamond_id']}; use a new key"
        )
    if row["response_status"] is None:
        raise ConflictError(f"a purchase with Idempotency-Key {key!r} is still in progress")
    return PurchaseAnswer(int(row["response_status"]), str(row["response_body"]))


def _begin(ctx: ApiContext, diamond_id: int, scoped_key: str, requested_by: str,
           reference: str | None) -> tuple[int, str, Decimal | None]:
    now = ctx.now()
    with ctx.db.transaction() as conn:
        stone = lock_stone(conn, diamond_id)
        expire_stale(conn, diamond_id, now)
        if stone["price"] is None:
            raise ConflictError(f"diamond {diamond_id} has no price (no pricing rule matches it)")
        hold = conn.execute(Q.live_hold, {"diamond_id": diamond_id}).fetchone()
        if hold is not None and hold["requested_by"] != requested_by:
            raise ConflictError(f"diamond {diamond_id} is held by another client")
        if conn.execute(Q.open_purchase, {"diamond_id": diamond_id}).fetchone() is not None:
            raise ConflictError(f"diamond {diamond_id} is already being purchased")
        row = conn.execute(Q.insert_pending_purchase, {
            "diamond_id": diamond_id, "key": scoped_key, "price": stone["price"], "requested_by": requested_by,
            "reference": reference, "now": now,
        }).fetchone()
    assert row is not None
    return int(row["id"]), str(stone["offer_id"]), stone["price"]


def purchase(ctx: ApiContext, diamond_id: int, key: str, requested_by: str, *,
             reference: str | None = None, comment: str | None = None) -> PurchaseAnswer:
    """Order the stone through the feed once per (credential, key); a repeat gets the first answer."""
    feed = ctx.require_feed()
    scoped = _scoped(requested_by, key)
    with ctx.db.connection() as conn:
        existing = conn.execute(Q.purchase_by_key, {"key": scoped}).fetchone()
    if existing is not None:
        return _replay(existing, diamond_id, key)
    try:
        purchase_id, offer_id, price = _begin(ctx, diamond_id, scoped, requested_by, reference)
    except pg_errors.UniqueViolation as exc:
        # Lost a race: either the same key arrived twice at once, or another key is buying this stone.
        with ctx.db.connection() as conn:
            existing = conn.execute(Q.purchase_by_key, {"key": scoped}).fetchone()
        if existing is not None:
            return _replay(existing, diamond_id, key)
        raise ConflictError(f"diamond {diamond_id} is already being purchased") from exc
    try:
        order_id = feed.order(offer_id, reference=reference or key, comment=comment)
    except (FeedTransientError, FeedPermanentError) as exc:
        status, code = status_for(exc)
        answer = PurchaseAnswer.of(status, error_body(code, f"the feed did not confirm the order: {exc}"))
        _finish(ctx, diamond_id, purchase_id, answer, error=str(exc)[:500])
        return answer
    now = ctx.now()
    body = {
        "purchase_id": purchase_id, "diamond_id": diamond_id, "status": "placed", "order_id": order_id,
        "price": None if price is None else str(price), "idempotency_key": key, "reference": reference,
        "placed_at": now.isoformat(),
    }
    answer = PurchaseAnswer.of(201, body)
    with ctx.db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})  # lock order: the stone first (see holds.py)
        _record(conn, purchase_id, "placed", answer, order_id=order_id, now=now)
        conn.execute(Q.release_active_holds, {"diamond_id": diamond_id, "now": now, "reason": "purchased"})
        conn.execute(Q.set_availability, {
            "id": diamond_id, "availability": Availability.SOLD.value, "set_hold_id": True, "hold_id": None,
            "now": now, "changed_by": requested_by, "reason": f"purchased, order {order_id}",
        })
    log.info("purchase placed", extra={"diamond_id": diamond_id, "purchase_id": purchase_id})
    return answer


def _record(conn: Any, purchase_id: int, status: str, answer: PurchaseAnswer, *, now: Any,
            order_id: str | None = None, error: str | None = None) -> None:
    conn.execute(Q.finish_purchase, {
        "id": purchase_id, "status": status, "feed_order_id": order_id, "error": error, "now": now,
        "response_status": answer.status, "response_body": answer.body,
    })


def _finish(ctx: ApiContext, diamond_id: int, purchase_id: int, answer: PurchaseAnswer, *, error: str) -> None:
    with ctx.db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})
        _record(conn, purchase_id, "failed", answer, now=ctx.now(), error=error)
