"""A search answers the same whichever way it reaches the database: through the asyncio pool a served app opens in
its lifespan (`ApiContext.reads`, as under `opus serve`), or in a thread through `Database` (no lifespan: the
Functions host's ASGI adapter)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from api_conftest import Auth, insert_diamonds
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.keys import create_key
from opus.config import Settings
from opus.db.pool import Database
from opus.testing.databases import scratch_database

SEARCH = "/api/v2/diamonds"


@pytest.fixture
def stones(db: Database) -> None:
    rng = random.Random(5)
    insert_diamonds(db, [{
        "shape": rng.choice(["ROUND", "OVAL", "PEAR"]), "color": rng.choice(["D", "E", "F", "G"]),
        "clarity": rng.choice(["VVS2", "VS1", "VS2"]), "lab_grown": rng.random() < 0.4,
        "carats": Decimal(rng.choice(["0.500", "0.750", "1.000", "1.500"])),
        "feed_price": Decimal(rng.choice(["500.00", "1234.56", "2500.10"])),
    } for _ in range(150)])


def _walk(client: TestClient, headers: dict[str, str], params: dict[str, Any]) -> list[Any]:
    """Every page of a search, following `next`, as the bodies the client received."""
    bodies, query = [], dict(params)
    while True:
        response = client.get(SEARCH, params=query, headers=headers)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        if bodies[-1]["next"] is None or len(bodies) > 20:
            return bodies
        query = {**params, "next": bodies[-1]["next"]}


@pytest.mark.parametrize("params", [
    {"limit": 25},
    {"limit": 40, "count": "exact", "sort": "carats", "order": "desc"},
    {"shapes": "ROUND,OVAL", "colors": "D,E,F", "clarities": "VS1,VS2", "lab_grown": "false", "carat_min": "0.6"},
    {"sort": "color", "limit": 30, "count": "exact"},
    {"sort": "updated", "order": "desc", "limit": 50},
])
def test_the_pool_of_the_served_app_and_the_thread_give_the_same_pages(
    db: Database, settings: Settings, auth: Auth, stones: None, params: dict[str, Any]
) -> None:
    served = TestClient(create_app(db=db, settings=settings, feed=None, control=None))
    threaded = TestClient(create_app(db=db, settings=settings, feed=None, control=None))
    with served:  # runs the lifespan: the app's reads go through its asyncio pool
        assert served.app.state.opus.reads is not None  # type: ignore[attr-defined]
        through_pool = _walk(served, auth("read"), params)
    assert threaded.app.state.opus.reads is None  # type: ignore[attr-defined]
    through_thread = _walk(threaded, auth("read"), params)
    assert through_pool == through_thread
    assert sum(len(body["items"]) for body in through_pool) > 0
    assert served.app.state.opus.reads is None, "closed with the lifespan"  # type: ignore[attr-defined]


def test_a_bad_cursor_is_refused_alike(db: Database, settings: Settings, auth: Auth, stones: None) -> None:
    with TestClient(create_app(db=db, settings=settings, feed=None, control=None)) as served:
        pooled = served.get(SEARCH, params={"next": "not-a-cursor"}, headers=auth("read"))
    threaded = TestClient(create_app(db=db, settings=settings, feed=None, control=None)).get(
        SEARCH, params={"next": "not-a-cursor"}, headers=auth("read"))
    assert pooled.status_code == threaded.status_code == 400
    assert pooled.json() == threaded.json()


def test_a_database_lost_while_served_is_503_and_the_pool_recovers(database_url: str, settings: Settings) -> None:
    # A database of its own, whose connections are cut by the server while the app holds them.
    with scratch_database(database_url, "opus_lost") as url, Database(url, max_size=2, timeout_s=2) as db:
        key = create_key(db, "reader", "read")
        headers = {"X-API-Key": key}
        with TestClient(create_app(db=db, settings=settings, feed=None, control=None)) as served:
            assert served.get(SEARCH, headers=headers).status_code == 200  # the key is remembered from here
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            lost = served.get(SEARCH, headers=headers)
            assert lost.status_code == 503, lost.text
            assert lost.json()["error"]["code"] == "database_unavailable"
            # The broken connection was discarded: the next search has a new one.
            assert served.get(SEARCH, headers=headers).status_code == 200
