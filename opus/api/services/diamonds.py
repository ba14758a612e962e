"""Reading one stone and setting its availability by hand (admins only).

A hand-set availability must not contradict what holds and purchases decided: a stone with a live hold, an open
purchase, or already SOLD is changed only when the admin says `override`, and then no live hold survives the
change (it is cancelled at the feed and recorded as released), so no stone marked AVAILABLE or SOLD keeps a hold
that blocks other clients. Purchase records are history of orders the feed took and are never rewritten here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from opus.api.context import ApiContext
from opus.api.errors import ApiError
from opus.api.services.holds import expire_stale
from opus.db.queries import Queries
from opus.domain.models import Availability
from opus.errors import NotFoundError

log = logging.getLogger(__name__)
Q = Queries("api_trading")
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AvailabilityChange:
    availability: Availability
    reason: str
    override: bool
    changed_by: str  # the principal id of the admin credential


def get_diamond(ctx: ApiContext, diamond_id: int, caller: str) -> Row:
    """The stone and its live hold, `mine` when `caller` (a principal id) placed it."""
    with ctx.db.connection() as conn:
        row = conn.execute(Q.get_diamond, {"id": diamond_id}).fetchone()
        hold = conn.execute(Q.live_hold, {"diamond_id": diamond_id}).fetchone() if row else None
    if row is None:
        raise NotFoundError(f"diamond {diamond_id} does not exist")
    return {**row, "hold": None if hold is None else {
        "mine": hold["requested_by"] == caller, "status": hold["status"], "held_until": hold["held_until"]}}


def _conflicts(stone: Row, holds: list[Row], purchase: Row | None) -> list[dict[str, Any]]:
    """What the stone's state says about it that a hand-set availability would contradict."""
    found: list[dict[str, Any]] = [
        {"kind": "hold", "hold_id": h["id"], "status": h["status"], "requested_by": h["requested_by"]}
        for h in holds
    ]
    if purchase is not None:
        found.append({"kind": "purchase", "purchase_id": purchase["id"], "status": purchase["status"],
                      "requested_by": purchase["requested_by"]})
    if stone["availability"] == Availability.SOLD:
        found.append({"kind": "sold"})
    return found


def _refusal(diamond_id: int, conflicts: list[dict[str, Any]]) -> ApiError:
    what = {"hold": "a live hold", "purchase": "an open purchase", "sold": "it is SOLD"}
    reasons = ", ".join(dict.fromkeys(what[c["kind"]] for c in conflicts))
    return ApiError(409, f"diamond {diamond_id} has {reasons}; send \"override\": true to change it anyway",
                    code="availability_conflict", details=conflicts)


def _end_holds(ctx: ApiContext, conn: psycopg.Connection[Row], diamond_id: int, holds: list[Row],
               change: AvailabilityChange) -> None:
    # Cancelled at the feed under the stone's lock, as release_hold does, so that nothing else can hold or buy
    # the stone in between; a pending hold has no feed id yet, and its requester cancels it when the feed answers.
    for hold in holds:
        if hold["status"] == "active" and hold["feed_hold_id"]:
            ctx.require_feed().cancel_hold(str(hold["feed_hold_id"]))
    reason = f"ended by {change.changed_by} setting availability {change.availability.value}: {change.reason}"
    conn.execute(Q.end_live_holds, {"diamond_id": diamond_id, "now": ctx.now(), "reason": reason[:1000]})


def set_availability(ctx: ApiContext, diamond_id: int, change: AvailabilityChange) -> Row:
    """Set the availability and record the change; returns the stone as it is now."""
    now = ctx.now()
    with ctx.db.transaction() as conn:
        # Lock order as in holds.py: the stone's row first, then its hold and purchase rows.
        stone = conn.execute(Q.lock_diamond, {"id": diamond_id}).fetchone()
        if stone is None:
            raise NotFoundError(f"diamond {diamond_id} does not exist")
        expire_stale(conn, diamond_id, now)
        holds = conn.execute(Q.live_hold, {"diamond_id": diamond_id}).fetchall()
        purchase = conn.execute(Q.open_purchase, {"diamond_id": diamond_id}).fetchone()
        conflicts = _conflicts(stone, holds, purchase)
        if conflicts and not change.override:
            raise _refusal(diamond_id, conflicts)
        if holds:
            _end_holds(ctx, conn, diamond_id, holds, change)
        # A hand-set availability is never a feed hold, so the stone keeps no hold id.
        conn.execute(Q.set_availability, {
            "id": diamond_id, "availability": change.availability.value, "set_hold_id": True, "hold_id": None,
            "now": now, "changed_by": change.changed_by, "reason": change.reason,
        })
        row = conn.execute(Q.get_diamond, {"id": diamond_id}).fetchone()
    if conflicts:
        log.warning("availability overridden", extra={
            "diamond_id": diamond_id, "changed_by": change.changed_by, "conflicts": [c["kind"] for c in conflicts]})
    assert row is not None
    return row
