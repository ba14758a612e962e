"""Reading one stone and setting its availability by hand."""

from __future__ import annotations

from typing import Any

from opus.api.context import ApiContext
from opus.db.queries import Queries
from opus.domain.models import Availability
from opus.errors import NotFoundError

Q = Queries("api_trading")


def get_diamond(ctx: ApiContext, diamond_id: int) -> dict[str, Any]:
    with ctx.db.connection() as conn:
        row = conn.execute(Q.get_diamond, {"id": diamond_id}).fetchone()
    if row is None:
        raise NotFoundError(f"diamond {diamond_id} does not exist")
    return row


def set_availability(
    ctx: ApiContext, diamond_id: int, availability: Availability, reason: str, changed_by: str
) -> dict[str, Any]:
    """Set the availability and record the change; returns the stone as it is now."""
    now = ctx.now()
    with ctx.db.transaction() as conn:
        old = conn.execute(Q.set_availability, {
            "id": diamond_id, "availability": availability.value, "set_hold_id": False, "hold_id": None,
            "now": now, "changed_by": changed_by, "reason": reason,
        }).fetchone()
        if old is None:
            raise NotFoundError(f"diamond {diamond_id} does not exist")
        row = conn.execute(Q.get_diamond, {"id": diamond_id}).fetchone()
    assert row is not None
    return row
