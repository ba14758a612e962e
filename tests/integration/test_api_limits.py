"""Regression tests of the API findings of issue 12: failed authentications, body size and arrival time, HMAC
scope and nonces, authorisation before validation, strict integers, the document, and the shared rate limit."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, get_args

import anyio
import pytest
from api_conftest import HMAC_CLIENT, AppFactory, Auth, assert_unauthorized, hmac_headers, insert_diamonds
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message

from opus.api.app import create_app
from opus.api.routes import api_routes
from opus.api.schemas.common import RequestBody
from opus.config import Settings
from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"
RULES = "/api/v2/pricing-rules"
WRONG_KEY = "opus_ab12cd34_" + "x" * 43


# --- 1. unauthenticated traffic is bounded --------------------------------------------------------------
def test_failed_authentications_are_limited_per_address_without_database_lookups(
    db: Database, settings: Settings, auth: Auth
) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    app = create_app(db=db, settings=settings.model_copy(update={"auth_failures_per_minute": 10}), feed=None,
                     control=None, clock=lambda: now[0])
    with TestClient(app, client=("203.0.113.7", 4000)) as guesser, \
            TestClient(app, client=("198.51.100.2", 4000)) as neighbour:
        answers = [guesser.get(SEARCH, headers={"X-API-Key": WRONG_KEY}).status_code for _ in range(10)]
        assert answers == [401] * 10
        refused = guesser.get(SEARCH, headers={"X-API-Key": WRONG_KEY})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_failures"
        assert int(refused.headers["Retry-After"]) >= 1
        assert guesser.get(SEARCH, headers=auth("read")).status_code == 429, "the address is refused, any key"
        assert neighbour.get(SEARCH, headers=auth("read")).status_code == 200, "other addresses are not"
        now[0] += timedelta(seconds=6)  # one failure a 6 s at 10 a minute
        assert guesser.get(SEARCH, headers=auth("read")).status_code == 200


def test_a_blocked_address_costs_no_database_round_trip(db: Database, settings: Settings) -> None:
    app = create_app(db=db, settings=settings.model_copy(update={"auth_failures_per_minute": 2}), feed=None,
                     control=None, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))
    with TestClient(app) as guesser:
        for _ in range(2):
            assert_unauthorized(guesser.get(SEARCH, headers={"X-API-Key": WRONG_KEY}))
        before = db.checkouts()
        answers = {guesser.get(SEARCH, headers={"X-API-Key": WRONG_KEY}).status_code for _ in range(50)}
        after = db.checkouts()
    assert answers == {429}
    assert after == before, "the 50 refusals took no connection, so looked nothing up"


async def _call(app: FastAPI, method: str, path: str, headers: dict[str, str],
                chunks: list[bytes] | None, *, stall: bool = False) -> tuple[int, dict[str, str], int]:
    """Drive the ASGI app directly: (status, headers, how many body messages it asked for)."""
    pulled = 0
    chunks = list(chunks or [b""])
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        if stall and pulled > 1:
            await anyio.sleep(3600)  # the rest of the body never arrives
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks) or stall}

    async def send(message: Message) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw_headers,
        "client": ("192.0.2.1", 1234), "server": ("test", 80), "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, pulled


def test_every_body_is_capped_keys_and_signatures_alike(db: Database, settings: Settings, keys: dict[str, str]) -> None:
    app = create_app(db=db, settings=settings.model_copy(update={"api_max_body_bytes": 2048}), feed=None,
                     control=None)
    key = {"X-API-Key": keys["admin"], "Content-Type": "application/json"}
    declared = {**key, "Content-Length": str(10_000_000)}
    status, headers, pulled = anyio.run(_call, app, "POST", RULES, declared, [b"{"])
    assert (status, pulled) == (413, 0), "a declared size over the cap is refused before any of it is read"
    assert headers["connection"] == "close"
    chunked = [b'{"priority": 5, "markup_ratio": "1.5", "name": "' + b"x" * 1024] * 3 + [b'"}']
    status, _, pulled = anyio.run(_call, app, "POST", RULES, key, chunked)
    assert status == 413
    assert pulled == 2, "reading stops at the cap"
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM pricing_rules").fetchone() == {"n": 1}, "nothing stored"
    body = b'{"x": "' + b"y" * 4096 + b'"}'
    signed = hmac_headers("POST", RULES, body)
    status, _, _ = anyio.run(_call, app, "POST", RULES, signed, [body[:1500], body[1500:]])
    assert status == 413


def test_a_stranger_with_hmac_headers_is_refused_before_its_body_is_read(db: Database, settings: Settings) -> None:
    app = create_app(db=db, settings=settings, feed=None, control=None)
    stranger = hmac_headers("POST", RULES, b"{}", client_id="stranger")
    status, _, pulled = anyio.run(_call, app, "POST", RULES, stranger, [b"x" * 60_000] * 20)
    assert (status, pulled) == (401, 0)
    stale = hmac_headers("POST", RULES, b"{}", timestamp=int(time.time()) - 3600)
    status, _, pulled = anyio.run(_call, app, "POST", RULES, stale, [b"x" * 60_000] * 20)
    assert (status, pulled) == (401, 0)


def test_a_body_that_does_not_arrive_in_time_is_408(db: Database, settings: Settings, keys: dict[str, str]) -> None:
    app = create_app(db=db, settings=settings.model_copy(update={"api_request_timeout_s": 0.3}), feed=None,
                     control=None)
    started = time.monotonic()
    status, headers, _ = anyio.run(partial(_call, stall=True), app, "POST", RULES, {"X-API-Key": keys["admin"]},
                                   [b'{"prio'])
    assert status == 408
    assert headers["connection"] == "close"
    assert time.monotonic() - started < 3


# --- 2. HMAC: least privilege, nonces, lowercase hex ----------------------------------------------------
def test_two_identical_signed_requests_in_one_second_both_pass_with_their_own_nonces(client: TestClient) -> None:
    stamp = int(time.time())
    first = client.get(SEARCH, headers=hmac_headers("GET", SEARCH, timestamp=stamp))
    second = client.get(SEARCH, headers=hmac_headers("GET", SEARCH, timestamp=stamp))
    assert (first.status_code, second.status_code) == (200, 200)
    reused = hmac_headers("GET", SEARCH, timestamp=stamp, nonce="n" * 20)
    assert client.get(SEARCH, headers=reused).status_code == 200
    assert_unauthorized(client.get(SEARCH, headers=reused))


def test_a_signature_in_upper_case_hex_is_refused(client: TestClient) -> None:
    headers = hmac_headers("GET", SEARCH)
    assert_unauthorized(client.get(SEARCH, headers={**headers, "X-Signature": headers["X-Signature"].upper()}))
    assert client.get(SEARCH, headers=headers).status_code == 200


def test_an_unlisted_hmac_client_cannot_delete_pricing_rules(client: TestClient, db: Database) -> None:
    path = f"{RULES}/1"
    response = client.delete(path, headers=hmac_headers("DELETE", path))
    assert response.status_code == 403
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM pricing_rules").fetchone() == {"n": 1}


def test_a_bad_nonce_is_401(client: TestClient) -> None:
    for nonce in ("short", "has spaces in it ok", "x" * 129):
        assert_unauthorized(client.get(SEARCH, headers=hmac_headers("GET", SEARCH, nonce=nonce)))


# --- 3. authorisation before validation, strict integers ------------------------------------------------
@pytest.mark.parametrize(("scope", "method", "path"), [
    ("read", "POST", RULES), ("read", "PUT", f"{RULES}/1"), ("trade", "POST", "/api/v2/triggers/run"),
    ("trade", "POST", "/api/v2/diamonds/1/availability"), ("read", "POST", "/api/v2/diamonds/1/purchase"),
    ("read", "PUT", f"{RULES}/1.0"),
])
def test_a_scope_refusal_comes_before_the_body_and_parameters_are_looked_at(
    client: TestClient, auth: Auth, scope: str, method: str, path: str
) -> None:
    for body in (b"{not json", b'{"priority": "high"}', b"\xff\xfe"):
        response = client.request(method, path, content=body,
                                  headers={**auth(scope), "Content-Type": "application/json"})
        assert response.status_code == 403, f"{body!r}: {response.text}"


@pytest.mark.parametrize("path", ["/api/v2/diamonds/1.0", "/api/v2/diamonds/%201", "/api/v2/diamonds/1%20",
                                  "/api/v2/diamonds/1e0", "/api/v2/diamonds/+1", f"{RULES}/1.0"])
def test_path_ids_are_strict_integers(client: TestClient, db: Database, auth: Auth, path: str) -> None:
    insert_diamonds(db, [{}])
    assert client.get("/api/v2/diamonds/1", headers=auth("read")).status_code == 200
    assert client.get(path, headers=auth("read")).status_code == 422


@pytest.mark.parametrize("query", ["limit=1.0", "limit=%205", "limit=5%20", "limit=1_0", "offset=0.0"])
def test_query_integers_are_strict(client: TestClient, auth: Auth, query: str) -> None:
    path = "/api/v2/analytics/runs" if query.startswith("offset") else SEARCH
    assert client.get(f"{path}?{query}", headers=auth("read")).status_code == 422


RUN = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
RULE = {"priority": 3, "markup_ratio": "1.25"}
CHANGE = {"availability": "SOLD", "reason": "sold in the shop"}


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/api/v2/triggers/consolidate", {"run_id": RUN, "force": 0}, "force"),
    ("POST", "/api/v2/triggers/consolidate", {"run_id": RUN, "force": "true"}, "force"),
    ("POST", RULES, {**RULE, "priority": "3"}, "priority"),
    ("POST", RULES, {**RULE, "priority": True}, "priority"),
    ("POST", RULES, {**RULE, "active": 1}, "active"),
    ("PUT", f"{RULES}/1", {**RULE, "lab_grown": "false"}, "lab_grown"),
    ("PUT", f"{RULES}/1", {**RULE, "rating": "2"}, "rating"),
    ("POST", "/api/v2/diamonds/1/availability", {**CHANGE, "override": "yes"}, "override"),
    ("POST", "/api/v2/triggers/run", {"type": "full", "feed": 7}, "feed"),
    ("POST", "/api/v2/diamonds/1/purchase", {"reference": 12345}, "reference"),
])
def test_body_scalars_are_taken_as_the_json_type_they_are(
    client: TestClient, auth: Auth, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    headers = {**auth("admin"), "Idempotency-Key": "strict-scalars-1"}
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 422, f"{body} was accepted: {response.status_code}"
    error = response.json()["error"]
    assert [problem["loc"][-1] for problem in error["details"]] == [field]
    assert field in error["message"]


def test_values_json_carries_as_text_are_read_from_it(client: TestClient, db: Database, auth: Auth) -> None:
    rule = {**RULE, "carat_min": "0.5", "feed_price_max": 20000, "lab_grown": True, "rating": -2}
    assert client.post(RULES, json=rule, headers=auth("admin")).status_code == 201
    # JSON has one number type: to JSON Schema, and so to the API, 4.0 is the integer 4.
    created = client.post(RULES, json={**RULE, "priority": 4.0, "markup_ratio": 2.0}, headers=auth("admin"))
    assert created.status_code == 201
    assert created.json()["rule"]["priority"] == 4
    [diamond_id] = insert_diamonds(db, [{}])
    assert client.post(f"/api/v2/diamonds/{diamond_id}/availability", json=CHANGE,
                       headers=auth("admin")).status_code == 200
    # No pipeline behind this app: past validation, the trigger answers 503.
    assert client.post("/api/v2/triggers/consolidate", json={"run_id": RUN, "force": True},
                       headers=auth("admin")).status_code == 503


def body_models(annotation: Any) -> list[type[BaseModel]]:
    """The models a body annotation names, through unions and `Annotated` alike."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in body_models(arg)]


def test_every_request_body_is_a_strict_request_body(client: TestClient) -> None:
    models = set()
    for route in api_routes(client.app):  # type: ignore[arg-type]
        for param in route.dependant.body_params:
            annotation = param.field_info.annotation
            found = body_models(annotation)
            assert found, f"{route.path}: body {annotation} is no model"
            models.update(found)
    assert len(models) >= 5, models
    assert [m for m in models if not issubclass(m, RequestBody)] == []


def test_a_body_that_is_not_json_is_400_and_json_that_breaks_the_schema_422(client: TestClient, auth: Auth) -> None:
    headers = {**auth("admin"), "Content-Type": "application/json"}
    for body in (b"{not json", b"\xff\xfe"):
        response = client.post(RULES, content=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid_body"
    assert client.post(RULES, content=b'{"priority": "high"}', headers=headers).status_code == 422


def test_the_document_declares_what_the_api_answers(client: TestClient, auth: Auth) -> None:
    document = client.get("/api/v2/openapi.json").json()
    purchase = document["paths"]["/api/v2/diamonds/{diamond_id}/purchase"]["post"]
    [key] = [p for p in purchase["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["required"] is True
    search = document["paths"]["/api/v2/diamonds"]["get"]
    [availability] = [p for p in search["parameters"] if p["name"] == "availability"]
    assert availability["schema"]["items"]["enum"] == ["AVAILABLE", "ON_HOLD", "SOLD", "MEMO", "UNKNOWN"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "400" in operation["responses"], f"{method} {path} does not declare 400"
            # Any path answers 405 to the methods it lacks (see the Allow test below).
            assert operation["responses"]["405"]["headers"]["Allow"]["required"] is True, f"{method} {path}"
            if path.startswith("/api/v2/"):
                assert {"408", "413", "429"} <= set(operation["responses"]), f"{method} {path}"
                assert "RateLimit" in operation["responses"]["200" if "200" in operation["responses"]
                                                             else next(iter(operation["responses"]))]["headers"]


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DASHBOARD = "https://dashboard.example"


def test_a_method_a_path_does_not_declare_is_405_allowing_exactly_the_declared_methods(
    make_client: AppFactory, auth: Auth
) -> None:
    # With CORS on, as the dashboard's deployment has it: a plain OPTIONS (not a preflight) reaches the router.
    client = make_client(cors_origins=[DASHBOARD])
    document = client.get("/api/v2/openapi.json").json()
    multi_method = 0
    for path, operations in document["paths"].items():
        declared = {method.upper() for method in operations}
        multi_method += len(declared) > 1
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in sorted(set(METHODS) - declared):
            refused = client.request(method, concrete, headers={**auth("admin"), "Origin": DASHBOARD})
            assert refused.status_code == 405, f"{method} {path}: {refused.status_code}"
            allowed = {m.strip() for m in refused.headers["Allow"].split(",")}
            assert allowed == declared, f"{method} {path}: Allow {refused.headers['Allow']}, declared {declared}"
            if method != "HEAD":
                assert refused.json()["error"]["code"] == "method_not_allowed"
    assert multi_method >= 3, "paths with several methods are covered"
    preflight = client.options(RULES, headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200, "a CORS preflight is still answered ahead of authentication and routing"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


# --- 4. one rate limit for every instance ---------------------------------------------------------------
def test_the_rate_limit_holds_across_two_apps_on_one_database(make_client: AppFactory, auth: Auth) -> None:
    frozen = datetime(2030, 1, 1, tzinfo=UTC)
    first = make_client(clock=lambda: frozen, rate_limit_per_minute=120)
    second = make_client(clock=lambda: frozen, rate_limit_per_minute=120)
    allowed = 0
    for _ in range(100):
        for app in (first, second):
            allowed += app.get(SEARCH, headers=auth("read")).status_code == 200
    # 120 tokens in the shared bucket; each app may strand at most one leased token (a lease is 2 here).
    assert 118 <= allowed <= 120, allowed


def test_answers_carry_the_ratelimit_headers_of_the_ietf_draft(make_client: AppFactory, auth: Auth) -> None:
    frozen = datetime(2030, 1, 1, tzinfo=UTC)
    client = make_client(clock=lambda: frozen, rate_limit_per_minute=60)
    answers = [client.get(SEARCH, headers=auth("read")) for _ in range(61)]
    assert answers[0].headers["RateLimit-Policy"] == '"credential";q=60;w=60'
    assert answers[0].headers["RateLimit"] == '"credential";r=59;t=1'
    assert answers[59].headers["RateLimit"] == '"credential";r=0;t=60'
    refused = answers[60]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit"] == '"credential";r=0;t=60'


def test_an_hmac_client_is_limited_by_its_own_bucket(make_client: AppFactory) -> None:
    frozen = datetime.now(UTC)
    client = make_client(clock=lambda: frozen, rate_limit_per_minute=2, hmac_scopes={HMAC_CLIENT: "read"})
    answers = [client.get(SEARCH, headers=hmac_headers("GET", SEARCH)).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
