"""Buying a stone exactly once per Idempotency-Key.

The feed has no idempotency key of its own, so ours is the only guard against double orders. A 'pending'
purchase row is written before the feed is called, under the key's unique constraint and the one-open-purchase-
per-stone index; the feed's answer (success or failure) is stored with the exact HTTP response, which is what a
repeated request with the same key gets back. Keys are scoped to the credential that sent them, so two clients
choosing the same key do not collide.

Repeats that arrive while the first request is still at the feed wait for its answer (ReplayWait: polled,
outside any transaction) and return it byte for byte; one that outwaits it gets the one documented
`purchase_in_progress` 409 with Retry-After.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors

from opus.api.context import ApiContext, ReplayWait
from opus.api.errors import ApiError, error_body, status_for
from opus.api.services.holds import check_tradable, expire_stale
from opus.db.queries import Queries
from opus.domain.models import Availability
from opus.errors import ConflictError, FeedPermanentError, FeedTransientError
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
        row = conn.execute(Q.insert_pending_purchase, {
            "diamond_id": diamond_id, "key": scoped_key, "price": stone["price"], "requested_by": requested_by,
            "reference": reference, "now": now,
        }).fetchone()
    assert row is not None
    return _Claimed(int(row["id"]), str(stone["offer_id"]), stone["price"])


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
        order_id = feed.order(claimed.offer_id, reference=reference or key, comment=comment)
    except (FeedTransientError, FeedPermanentError) as exc:
        status, code = status_for(exc)
        answer = PurchaseAnswer.of(status, error_body(code, f"the feed did not confirm the order: {exc}"))
        _finish(ctx, diamond_id, purchase_id, answer, error=str(exc)[:500])
        return answer
    now = ctx.now()
    body = {
        "purchase_id": purchase_id, "diamond_id": diamond_id, "status": "placed", "order_id": order_id,
        "price": None if claimed.price is None else str(claimed.price), "idempotency_key": key,
        "reference": reference, "placed_at": now.isoformat(),
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
