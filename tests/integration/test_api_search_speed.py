"""What keeps search cheap per request: the planner's estimate is asked once per filter set and remembered for a
few seconds, and results do not depend on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from api_conftest import AppFactory, Auth, insert_diamonds

from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"


def _analyse(db: Database) -> None:
    with db.connection() as conn:
        conn.autocommit = True
        conn.execute("ANALYZE diamonds")
        conn.autocommit = False


def test_the_estimate_is_remembered_per_filter_set_for_ten_seconds(
    make_client: AppFactory, db: Database, auth: Auth
) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    client = make_client(clock=lambda: now[0])
    insert_diamonds(db, [{"shape": "ROUND"} for _ in range(5)])
    _analyse(db)
    first = client.get(SEARCH, params={"shapes": "ROUND", "limit": 2}, headers=auth("read")).json()
    insert_diamonds(db, [{"shape": "ROUND", "feed_price": Decimal(2000 + i)} for i in range(2000)])
    _analyse(db)
    later = client.get(SEARCH, params={"shapes": "ROUND", "limit": 2, "next": first["next"]},
                       headers=auth("read")).json()
    assert later["total_estimate"] == first["total_estimate"], "the next page reuses the estimate"
    other = client.get(SEARCH, params={"shapes": "OVAL,ROUND"}, headers=auth("read")).json()
    assert other["total_estimate"] > 1000, "another filter set asks the planner"
    now[0] += timedelta(seconds=11)
    fresh = client.get(SEARCH, params={"shapes": "ROUND", "limit": 2}, headers=auth("read")).json()
    assert fresh["total_estimate"] > 1000, "after ten seconds the planner is asked again"
    exact = client.get(SEARCH, params={"shapes": "ROUND", "count": "exact"}, headers=auth("read")).json()
    assert exact["total"] == 2005, "an exact count is never cached"
