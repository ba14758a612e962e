"""Holding and releasing a stone at the feed, with `hold_history` as the record and the referee.

The race between concurrent holds is decided by the database, not by the feed: a 'pending' row is inserted
first and the unique partial index (one live hold per stone) lets exactly one request through. Only the winner
calls the feed, then records what it said.

Lock order: every transaction that writes a stone's hold or purchase rows locks the stone's row first. Without
that, a winner recording its answer (hold row, then stone) and a loser inserting (stone, then waiting on the
winner's hold row in the unique index) deadlock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from opus.api.context import ApiContext
from opus.db.queries import Queries
from opus.domain.models import Availability, DiamondStatus, HoldResult
from opus.errors import ConflictError, FeedPermanentError, FeedTransientError, HoldDeniedError, NotFoundError
from opus.ports import Feed

log = logging.getLogger(__name__)
Q = Queries("api_trading")
Row = dict[str, Any]
# Longer than the feed client's timeout with its retries: a pending row older than this has no live owner.
PENDING_TIMEOUT = timedelta(minutes=5)


def lock_stone(conn: psycopg.Connection[Row], diamond_id: int) -> Row:
    """Lock the stone's row and check that it can be held or bought."""
    return check_tradable(diamond_id, conn.execute(Q.lock_diamond, {"id": diamond_id}).fetchone())


def check_tradable(diamond_id: int, stone: Row | None) -> Row:
    if stone is None:
        raise NotFoundError(f"diamond {diamond_id} does not exist")
    if stone["status"] != DiamondStatus.ACTIVE:
        raise ConflictError(f"diamond {diamond_id} is no longer listed")
    if stone["availability"] == Availability.SOLD:
        raise ConflictError(f"diamond {diamond_id} is sold")
    return stone


def expire_stale(conn: psycopg.Connection[Row], diamond_id: int, now: datetime) -> None:
    conn.execute(Q.expire_stale_holds, {"diamond_id": diamond_id, "now": now, "pending_before": now - PENDING_TIMEOUT})


def _begin(ctx: ApiContext, diamond_id: int, requested_by: str) -> tuple[int, str]:
    """Claim the stone with a pending row; returns (hold row id, supplier stone id)."""
    now = ctx.now()
    try:
        with ctx.db.transaction() as conn:
            stone = lock_stone(conn, diamond_id)
            expire_stale(conn, diamond_id, now)
            if conn.execute(Q.open_purchase, {"diamond_id": diamond_id}).fetchone() is not None:
                raise ConflictError(f"diamond {diamond_id} is being purchased")
            row = conn.execute(
                Q.insert_pending_hold, {"diamond_id": diamond_id, "requested_by": requested_by, "now": now}
            ).fetchone()
    except pg_errors.UniqueViolation:
        raise ConflictError(f"diamond {diamond_id} is already held") from None
    assert row is not None
    return int(row["id"]), str(stone["supplier_stone_id"])


def _finish(ctx: ApiContext, diamond_id: int, hold_row: int, status: str, *, reason: str | None = None,
            result: HoldResult | None = None) -> None:
    with ctx.db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})
        conn.execute(Q.settle_pending_hold, {
            "id": hold_row, "status": status, "reason": reason,
            "feed_hold_id": result.hold_id if result else None, "held_until": result.until if result else None,
        })


def _cancel_orphan(feed: Feed, diamond_id: int, feed_hold_id: str) -> None:
    """Cancel a feed hold whose record was ended while the feed was placing it: nobody may keep it."""
    try:
        feed.cancel_hold(feed_hold_id)
    except (FeedTransientError, FeedPermanentError) as exc:
        # The feed lets the hold lapse on its own at `held_until`; the stone's record is already right.
        log.warning("could not cancel a hold ended while it was placed",
                    extra={"diamond_id": diamond_id, "error": str(exc)[:200]})


def place_hold(ctx: ApiContext, diamond_id: int, requested_by: str) -> Row:
    """Hold a stone at the feed for `requested_by`; returns the hold_history row."""
    feed = ctx.require_feed()
    hold_row, stone_id = _begin(ctx, diamond_id, requested_by)
    try:
        result = feed.hold(stone_id)
    except (FeedTransientError, FeedPermanentError) as exc:
        _finish(ctx, diamond_id, hold_row, "failed", reason=str(exc)[:500])
        raise
    except BaseException:
        # Anything else (a bug, an interrupt): free the stone rather than leave it pending.
        _finish(ctx, diamond_id, hold_row, "failed", reason="the hold request failed unexpectedly")
        raise
    if result.denied or result.hold_id is None:
        reason = result.reason or "the feed denied the hold"
        _finish(ctx, diamond_id, hold_row, "denied", reason=reason, result=result)
        raise HoldDeniedError(reason)
    now = ctx.now()
    with ctx.db.transaction() as conn:
        conn.execute(Q.lock_diamond, {"id": diamond_id})
        row = conn.execute(Q.settle_pending_hold, {
            "id": hold_row, "status": "active", "reason": None,
            "feed_hold_id": result.hold_id, "held_until": result.until,
        }).fetchone()
        if row is not None:
            conn.execute(Q.set_availability, {
                "id": diamond_id, "availability": Availability.ON_HOLD.value, "set_hold_id": True,
                "hold_id": result.hold_id, "now": now, "changed_by": requested_by, "reason": "hold placed",
            })
    if row is None:
        _cancel_orphan(feed, diamond_id, result.hold_id)
        raise ConflictError(f"the hold on diamond {diamond_id} was ended (by an administrator's availability "
                            "change) while the feed was placing it")
    log.info("hold placed", extra={"diamond_id": diamond_id, "hold_row": hold_row})
    return row


def release_hold(ctx: ApiContext, diamond_id: int, requested_by: str, *, is_admin: bool) -> Row:
    """Cancel the stone's active hold at the feed; only its holder or an admin may."""
    feed = ctx.require_feed()
    now = ctx.now()
    with ctx.db.transaction() as conn:
        # The stone stays locked while the feed cancels, so a concurrent release waits and then finds nothing
        # to release: the feed is asked to cancel once. Holds and purchases of this stone wait too.
        if conn.execute(Q.lock_diamond, {"id": diamond_id}).fetchone() is None:
            raise NotFoundError(f"diamond {diamond_id} does not exist")
        hold = conn.execute(Q.active_hold, {"diamond_id": diamond_id}).fetchone()
        if hold is None:
            raise NotFoundError(f"diamond {diamond_id} has no active hold")
        if hold["requested_by"] != requested_by and not is_admin:
            raise ConflictError(f"the hold on diamond {diamond_id} belongs to another client")
        if hold["feed_hold_id"]:
            feed.cancel_hold(str(hold["feed_hold_id"]))
        row = conn.execute(Q.finish_hold, {
            "id": hold["id"], "status": "released", "reason": f"released by {requested_by}",
            "released_at": now, "feed_hold_id": hold["feed_hold_id"], "held_until": hold["held_until"],
        }).fetchone()
        conn.execute(Q.set_availability, {
            "id": diamond_id, "availability": Availability.AVAILABLE.value, "set_hold_id": True,
            "hold_id": None, "now": now, "changed_by": requested_by, "reason": "hold released",
        })
    assert row is not None
    return row
