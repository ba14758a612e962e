"""Credentials (API keys, HMAC signatures), scopes and rate limits."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from api_conftest import HMAC_CLIENT, AppFactory, Auth, assert_unauthorized, hmac_headers
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from opus.api.app import is_protected
from opus.api.keys import create_key, list_keys, revoke_key
from opus.api.ratelimit import RateLimiter, SharedRateLimiter
from opus.api.security import Authenticator, AuthMiddleware, BodyLimits, Principal
from opus.db.pool import Database
from opus.domain.auth import Scope

SEARCH = "/api/v2/diamonds"


def test_health_needs_no_credentials_and_checks_the_database(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_no_credentials_is_401_with_a_challenge(client: TestClient) -> None:
    assert_unauthorized(client.get(SEARCH))


@pytest.mark.parametrize(
    "key",
    ["nonsense", "opus_ab12cd34_" + "x" * 43, "opus_ab12cd34_short", ""],
)
def test_a_wrong_key_is_401(client: TestClient, keys: dict[str, str], key: str) -> None:
    assert_unauthorized(client.get(SEARCH, headers={"X-API-Key": key}))


def test_a_key_with_a_known_prefix_but_wrong_secret_is_401(client: TestClient, keys: dict[str, str]) -> None:
    good = keys["read"]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert_unauthorized(client.get(SEARCH, headers={"X-API-Key": forged}))
    assert client.get(SEARCH, headers={"X-API-Key": good}).status_code == 200


def test_a_revoked_key_is_401_within_the_key_cache_time(make_client: AppFactory, db: Database) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    client = make_client(clock=lambda: now[0], api_key_cache_s=5.0)
    key = create_key(db, "leaving", "admin")
    assert client.get(SEARCH, headers={"X-API-Key": key}).status_code == 200
    prefix = key.split("_")[1]
    assert revoke_key(db, prefix) is True
    assert revoke_key(db, prefix) is False, "nothing left to revoke"
    now[0] += timedelta(seconds=5.5)
    response = client.get(SEARCH, headers={"X-API-Key": key})
    assert_unauthorized(response)
    assert "revoked" in response.json()["error"]["message"]


def test_without_a_key_cache_a_revocation_is_immediate(make_client: AppFactory, db: Database) -> None:
    client = make_client(api_key_cache_s=0)
    key = create_key(db, "leaving", "admin")
    assert client.get(SEARCH, headers={"X-API-Key": key}).status_code == 200
    revoke_key(db, key.split("_")[1])
    assert_unauthorized(client.get(SEARCH, headers={"X-API-Key": key}))


def test_revoke_by_id_and_unknown(db: Database) -> None:
    create_key(db, "one", "read")
    [row] = list_keys(db)
    assert revoke_key(db, str(row["id"])) is True
    assert revoke_key(db, "zzzzzzzz") is False
    assert revoke_key(db, 999999) is False


def test_keys_are_stored_as_digests_and_listed_without_them(db: Database) -> None:
    key = create_key(db, "reporting", "read")
    assert re.fullmatch(r"opus_[a-z0-9]{8}_[A-Za-z0-9_\-]{43}", key)
    [listed] = list_keys(db)
    assert (listed["name"], listed["scope"], listed["prefix"]) == ("reporting", "read", key.split("_")[1])
    assert "digest" not in listed
    with db.connection() as conn:
        stored = conn.execute("SELECT * FROM api_keys").fetchone()
    assert stored is not None
    assert key not in {str(v) for v in stored.values()}, "the plaintext is never stored"
    with pytest.raises(ValueError, match="scope"):
        create_key(db, "x", "superuser")
    with pytest.raises(ValueError, match="name"):
        create_key(db, " ", "read")


def test_last_used_is_written_at_most_once_a_minute(make_client: AppFactory, db: Database) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    client = make_client(clock=lambda: now[0])
    key = create_key(db, "k", "read")

    def last_used() -> datetime | None:
        return list_keys(db)[0]["last_used_at"]  # type: ignore[no-any-return]

    assert last_used() is None
    client.get(SEARCH, headers={"X-API-Key": key})
    assert last_used() == now[0]
    first = now[0]
    now[0] = first + timedelta(seconds=30)
    client.get(SEARCH, headers={"X-API-Key": key})
    assert last_used() == first, "no second write within a minute"
    now[0] = first + timedelta(seconds=61)
    client.get(SEARCH, headers={"X-API-Key": key})
    assert last_used() == now[0]


@pytest.mark.parametrize(
    ("scope", "method", "path", "expected"),
    [
        ("read", "POST", "/api/v2/diamonds/1/hold", 403),
        ("read", "POST", "/api/v2/diamonds/1/availability", 403),
        ("trade", "POST", "/api/v2/diamonds/1/availability", 403),
        ("read", "POST", "/api/v2/pricing-rules", 403),
        ("trade", "POST", "/api/v2/triggers/run", 403),
        ("trade", "DELETE", "/api/v2/pricing-rules/1", 403),
        ("read", "GET", "/api/v2/analytics/summary", 200),
        ("read", "GET", "/api/v2/pricing-rules", 200),
    ],
)
def test_scopes_decide_which_routes_a_key_may_use(
    client: TestClient, auth: Auth, scope: str, method: str, path: str, expected: int
) -> None:
    response = client.request(method, path, headers=auth(scope), json={})
    assert response.status_code == expected, response.text
    if expected == 403:
        assert response.json()["error"]["code"] == "forbidden"


# --- HMAC -----------------------------------------------------------------------------------------------
def test_a_good_hmac_signature_is_accepted_with_the_read_scope_by_default(client: TestClient) -> None:
    path = "/api/v2/diamonds?shapes=ROUND&limit=5"
    response = client.get(path, headers=hmac_headers("GET", path))
    assert response.status_code == 200, response.text
    assert client.get("/api/v2/me", headers=hmac_headers("GET", "/api/v2/me")).json()["scope"] == "read"
    body = b'{"type":"full"}'
    signed = hmac_headers("POST", "/api/v2/triggers/run", body)
    response = client.post("/api/v2/triggers/run", content=body,
                           headers={**signed, "Content-Type": "application/json"})
    assert response.status_code == 403, "least privilege: an unlisted HMAC client only reads"
    assert client.delete("/api/v2/pricing-rules/1", headers=hmac_headers("DELETE", "/api/v2/pricing-rules/1")
                         ).status_code == 403


def test_hmac_scopes_from_settings_widen_a_client(make_client: AppFactory) -> None:
    client = make_client(hmac_scopes={HMAC_CLIENT: "admin"})
    body = b'{"type":"full"}'
    signed = hmac_headers("POST", "/api/v2/triggers/run", body)
    response = client.post("/api/v2/triggers/run", content=body, headers={**signed, "Content-Type": "application/json"})
    assert response.status_code == 503, "admin scope reaches the trigger, which has no control in this app"


def test_hmac_scopes_from_settings_narrow_a_client(make_client: AppFactory) -> None:
    client = make_client(hmac_scopes={HMAC_CLIENT: "read"})
    assert client.get(SEARCH, headers=hmac_headers("GET", SEARCH)).status_code == 200
    body = b'{"type":"full"}'
    signed = hmac_headers("POST", "/api/v2/triggers/run", body)
    response = client.post("/api/v2/triggers/run", content=body, headers={**signed, "Content-Type": "application/json"})
    assert response.status_code == 403


def test_a_bad_signature_is_401(client: TestClient) -> None:
    headers = hmac_headers("GET", SEARCH)
    headers["X-Signature"] = "0" * 64
    assert_unauthorized(client.get(SEARCH, headers=headers))


def test_an_unknown_client_or_wrong_secret_is_401(client: TestClient) -> None:
    assert_unauthorized(client.get(SEARCH, headers=hmac_headers("GET", SEARCH, client_id="stranger")))
    assert_unauthorized(client.get(SEARCH, headers=hmac_headers("GET", SEARCH, secret="guessed")))


def test_incomplete_hmac_headers_are_401(client: TestClient) -> None:
    headers = hmac_headers("GET", SEARCH)
    for missing in ("X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature"):
        partial = {k: v for k, v in headers.items() if k != missing}
        assert_unauthorized(client.get(SEARCH, headers=partial))
    assert_unauthorized(client.get(SEARCH, headers={**headers, "X-Timestamp": "soon"}))


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_stale_or_future_timestamp_is_401(client: TestClient, skew: int) -> None:
    headers = hmac_headers("GET", SEARCH, timestamp=int(time.time()) + skew)
    response = client.get(SEARCH, headers=headers)
    assert_unauthorized(response)
    assert "X-Timestamp" in response.json()["error"]["message"]


def test_a_replayed_nonce_is_401_even_on_another_instance(make_client: AppFactory) -> None:
    first, second = make_client(), make_client()
    headers = hmac_headers("GET", SEARCH)
    assert first.get(SEARCH, headers=headers).status_code == 200
    replay = first.get(SEARCH, headers=headers)
    assert_unauthorized(replay)
    assert "replay" in replay.json()["error"]["message"]
    assert_unauthorized(second.get(SEARCH, headers=headers))


def test_a_tampered_query_string_is_401(client: TestClient) -> None:
    headers = hmac_headers("GET", "/api/v2/diamonds?shapes=ROUND")
    assert_unauthorized(client.get("/api/v2/diamonds?shapes=OVAL", headers=headers))
    assert_unauthorized(client.get("/api/v2/diamonds", headers=headers))


def test_a_tampered_body_is_401(client: TestClient, db: Database) -> None:
    signed = b'{"priority": 10, "markup_ratio": "1.5"}'
    sent = b'{"priority": 10, "markup_ratio": "0.5"}'
    headers = {**hmac_headers("POST", "/api/v2/pricing-rules", signed), "Content-Type": "application/json"}
    assert_unauthorized(client.post("/api/v2/pricing-rules", content=sent, headers=headers))
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM pricing_rules").fetchone() == {"n": 1}


def test_expired_replay_entries_are_pruned(make_client: AppFactory, db: Database) -> None:
    now = [datetime.now(UTC)]
    client = make_client(clock=lambda: now[0])
    ts = int(now[0].timestamp())
    assert client.get(SEARCH, headers=hmac_headers("GET", SEARCH, timestamp=ts)).status_code == 200
    now[0] += timedelta(minutes=10)
    later = int(now[0].timestamp())
    assert client.get(SEARCH, headers=hmac_headers("GET", SEARCH, timestamp=later)).status_code == 200
    with db.connection() as conn:
        rows = conn.execute("SELECT client_id FROM api_hmac_nonces").fetchall()
    assert rows == [{"client_id": HMAC_CLIENT}], "the expired nonce was pruned, the new one kept"


# --- rate limits ----------------------------------------------------------------------------------------
def test_more_than_the_limit_per_minute_is_429_with_retry_after(make_client: AppFactory, auth: Auth) -> None:
    frozen = datetime(2030, 1, 1, tzinfo=UTC)
    client = make_client(clock=lambda: frozen, rate_limit_per_minute=3)
    assert [client.get(SEARCH, headers=auth("read")).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(SEARCH, headers=auth("read"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "20"
    assert client.get(SEARCH, headers=auth("trade")).status_code == 200, "another credential has its own bucket"


def test_an_hmac_client_can_be_given_a_narrower_scope(db: Database) -> None:
    authenticator = Authenticator(db, {HMAC_CLIENT: "s"}, lambda: datetime.now(UTC),
                                  hmac_scopes={HMAC_CLIENT: Scope.READ})
    seen: list[Principal] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(request.scope["state"]["principal"])
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/api/v2/x", endpoint)])
    app.add_middleware(AuthMiddleware, authenticator=authenticator,
                       limiter=SharedRateLimiter(db, 10, lambda: datetime.now(UTC)),
                       auth_failures=RateLimiter(10, time.monotonic), limits=BodyLimits(1024, 1.0),
                       is_protected=is_protected, required_scope=lambda _: None)
    with TestClient(app) as inner:
        assert inner.get("/api/v2/x", headers=hmac_headers("GET", "/api/v2/x", secret="s")).status_code == 200
    assert seen[0].scope == Scope.READ
