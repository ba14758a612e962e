"""The per-credential rate limit holds across two API servers on one database, over real HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from test_api_hostile_clients import running

from opus.api.app import create_app
from opus.config import Settings
from opus.db.pool import Database

LIMIT = 120


def test_two_servers_share_one_limit_per_credential(db: Database, settings: Settings, keys: dict[str, str]) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": LIMIT})
    first = create_app(db=db, settings=limited, feed=None, control=None)
    second = create_app(db=db, settings=limited, feed=None, control=None)
    with running(first, limited) as one, running(second, limited) as two:

        def hammer(url: str) -> list[int]:
            with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": keys["read"]}) as http:
                return [http.get("/api/v2/me").status_code for _ in range(LIMIT)]

        with ThreadPoolExecutor(4) as pool:
            answers = [code for codes in pool.map(hammer, [one, two, one, two]) for code in codes]
    allowed = answers.count(200)
    # The run takes a few seconds, during which the bucket refills at 2 a second: a little over LIMIT may pass,
    # never the LIMIT per server that per-process buckets allowed.
    assert answers.count(429) > 0
    assert LIMIT - 4 <= allowed <= LIMIT + 40, allowed
