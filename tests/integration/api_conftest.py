"""Shared code of the REST API tests, importable from test modules (`from api_conftest import ...`):
stones inserted by SQL, HMAC headers, sandbox stones mirrored into the catalogue."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from fastapi.testclient import TestClient

from opus.db.pool import Database
from opus.domain.auth import sign_request
from opus.domain.pricing import round_cents
from opus.sandbox.runner import RunningSandbox

HMAC_CLIENT = "partner"
HMAC_SECRET = "partner-shared-secret-0123456789abcdef"
DEFAULT_MARKUP = Decimal("1.20")
AppFactory = Callable[..., TestClient]
Auth = Callable[[str], dict[str, str]]

_serial = itertools.count(1)

DIAMOND_DEFAULTS: dict[str, Any] = {
    "feed": "nivoda", "shape": "ROUND", "carats": Decimal("1.000"), "color": "G", "clarity": "VS1",
    "cut": "EXCELLENT", "polish": "EXCELLENT", "symmetry": "EXCELLENT", "fluorescence": "NONE", "lab": "GIA",
    "lab_grown": False, "availability": "AVAILABLE", "feed_price": Decimal("1000.00"), "status": "active",
    "supplier_name": "Acme Gems", "content_hash": "test",
}


def insert_diamonds(db: Database, rows: list[dict[str, Any]]) -> list[int]:
    """Insert stones directly; unspecified columns take DIAMOND_DEFAULTS, price defaults to feed_price x 1.20."""
    ids: list[int] = []
    with db.transaction() as conn:
        for fields in rows:
            n = next(_serial)
            row = {**DIAMOND_DEFAULTS, "supplier_stone_id": f"S{n}", "offer_id": f"O{n}", **fields}
            if "price" not in fields:
                row["price"] = round_cents(Decimal(row["feed_price"]) * DEFAULT_MARKUP)
                row.setdefault("markup_ratio", DEFAULT_MARKUP)
            columns = list(row)
            query = "INSERT INTO diamonds ({}) VALUES ({}) RETURNING id".format(
                ", ".join(columns), ", ".join(f"%({c})s" for c in columns)
            )
            ids.append(int(conn.execute(query, row).fetchone()["id"]))  # type: ignore[index]
    return ids


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert "ApiKey" in response.headers["www-authenticate"]


def hmac_headers(method: str, path_with_query: str, body: bytes = b"", *, timestamp: int | None = None,
                 secret: str = HMAC_SECRET, client_id: str = HMAC_CLIENT, nonce: str | None = None) -> dict[str, str]:
    """Signed headers for one request; a fresh nonce each call unless one is given."""
    ts = int(time.time()) if timestamp is None else timestamp
    once = nonce or uuid.uuid4().hex
    return {
        "X-Client-Id": client_id, "X-Timestamp": str(ts), "X-Nonce": once,
        "X-Signature": sign_request(secret, method, path_with_query, ts, body, nonce=once),
    }



def stones_from_sandbox(db: Database, sandbox: RunningSandbox, count: int) -> list[tuple[int, Any]]:
    """Insert `count` of the sandbox's AVAILABLE stones into `diamonds`; returns (diamond id, sandbox stone)."""
    stones = [s for s in sandbox.inventory.stones() if s.availability == "AVAILABLE"][:count]
    assert len(stones) == count, "the sandbox has too few available stones"
    ids = insert_diamonds(db, [
        {"supplier_stone_id": s.stone_id, "offer_id": s.offer_id, "feed_price": Decimal(s.price_cents) / 100}
        for s in stones
    ])
    return list(zip(ids, stones, strict=True))


def db_rows(db: Database, query: str, *params: Any) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(query, params).fetchall()


def diamond_row(db: Database, diamond_id: int) -> dict[str, Any]:
    [row] = db_rows(db, "SELECT * FROM diamonds WHERE id = %s", diamond_id)
    return row
