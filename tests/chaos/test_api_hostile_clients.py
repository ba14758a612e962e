"""The API over real HTTP (uvicorn configured as `opus serve` configures it) under clients that send no
credentials, the wrong scope, huge or slow bodies and absurd parameters. Every answer is a 4xx, in bounded time,
and nothing is changed by a refused request."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from api_conftest import insert_diamonds

from opus.api.app import PUBLIC_PATHS, create_app
from opus.api.routes import route_scopes
from opus.config import Settings
from opus.db.pool import Database
from opus.local.http_protocol import MAX_REQUEST_HEAD_BYTES
from opus.local.serve import server_config
from opus.sandbox.server import SandboxServer

BODY_TIMEOUT_S = 0.5
MAX_BODY = 4096
ANSWER_WITHIN_S = 5.0
# Tables a refused request must not change.
SIDE_EFFECTS = ("pricing_rules", "hold_history", "purchase_history", "availability_history", "run_metadata")


@contextmanager
def running(app: Any, settings: Settings) -> Iterator[str]:
    server = SandboxServer(server_config(app, settings, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.bound_port()}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[tuple[str, Settings]]:
    limited = settings.model_copy(update={
        "api_request_timeout_s": BODY_TIMEOUT_S, "api_max_body_bytes": MAX_BODY,
        "auth_failures_per_minute": 1_000_000,
    })
    with running(create_app(db=db, settings=limited, feed=None, control=None), limited) as url:
        yield url, limited


def _counts(db: Database) -> dict[str, int]:
    with db.connection() as conn:
        return {t: int(conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"])  # type: ignore[index]
                for t in SIDE_EFFECTS}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_without_credentials_or_with_junk_ones_is_401(
    api: tuple[str, Settings], db: Database
) -> None:
    url, _ = api
    app = create_app(db=db, settings=api[1], feed=None, control=None)
    # The documentation (its page, assets, document) is public on purpose: every other route needs a credential.
    routes = [(m, p) for (m, p) in route_scopes(app)
              if p.startswith("/api/v2/") and m != "HEAD" and p not in PUBLIC_PATHS]
    assert len(routes) >= 22
    junk: list[dict[str, Any]] = [
        {}, {"X-API-Key": "opus_zzzzzzzz_" + "q" * 43}, {"X-API-Key": b"\xe9\xff\xfe"},
        {"X-Client-Id": "x", "X-Timestamp": "1", "X-Nonce": "n" * 16, "X-Signature": "0" * 64}]
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN_S) as http:
        for method, path in routes:
            for headers in junk:
                response = http.request(method, _concrete(path), headers=headers, content=b'{"x": 1}')
                assert response.status_code == 401, f"{method} {path} {headers}: {response.status_code}"


def test_every_route_with_too_small_a_scope_is_403_and_changes_nothing(
    api: tuple[str, Settings], db: Database, keys: dict[str, str]
) -> None:
    url, settings = api
    insert_diamonds(db, [{}])
    app = create_app(db=db, settings=settings, feed=None, control=None)
    narrower = {"trade": ["read"], "admin": ["read", "trade"]}
    before = _counts(db)
    checked = 0
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN_S) as http:
        for (method, path), needed in route_scopes(app).items():
            for scope in narrower.get(needed or "", []):
                for body in (b'{"type": "full", "priority": 1, "markup_ratio": "2"}', b"{not json"):
                    response = http.request(method, _concrete(path), content=body, headers={
                        "X-API-Key": keys[scope], "Content-Type": "application/json", "Idempotency-Key": "k"})
                    assert response.status_code == 403, f"{scope} {method} {path}: {response.status_code}"
                    checked += 1
    assert checked >= 20
    assert _counts(db) == before


def _raw_exchange(url: str, request: bytes, *, then_wait: bool) -> tuple[bytes, float]:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(request)
        answer = b""
        while True:  # until the server closes the connection (or the socket timeout fails the test)
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if not then_wait and b"\r\n\r\n" in answer:
                break
    return answer, time.monotonic() - started


def test_a_slow_body_is_408_and_the_connection_closed_in_bounded_time(
    api: tuple[str, Settings], keys: dict[str, str]
) -> None:
    url, _ = api
    head = (f"POST /api/v2/pricing-rules HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['admin']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n").encode()
    answer, took = _raw_exchange(url, head + b'{"priority": 3', then_wait=True)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < BODY_TIMEOUT_S + 3


def test_an_oversized_body_is_413_before_it_is_sent(api: tuple[str, Settings], keys: dict[str, str]) -> None:
    url, _ = api
    head = (f"POST /api/v2/pricing-rules HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['admin']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n").encode()
    answer, took = _raw_exchange(url, head, then_wait=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert took < 3
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN_S) as http:
        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024
        response = http.post("/api/v2/pricing-rules", content=chunks(), headers={"X-API-Key": keys["admin"]})
        assert response.status_code == 413


def test_an_oversized_request_head_is_431_and_the_connection_closed(
    api: tuple[str, Settings], keys: dict[str, str]
) -> None:
    url, _ = api
    head = f"GET /api/v2/me HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['read']}\r\n".encode()
    answer, took = _raw_exchange(url, head + b"X-Filler: " + b"a" * (MAX_REQUEST_HEAD_BYTES + 100) + b"\r\n\r\n",
                                 then_wait=True)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert took < 3
    # Just under the bound, the same request is served.
    filler = b"X-Filler: " + b"a" * (MAX_REQUEST_HEAD_BYTES - len(head) - 100) + b"\r\n\r\n"
    answer, _ = _raw_exchange(url, head + filler, then_wait=False)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_head_trickled_past_the_bound_is_refused_before_it_ends(
    api: tuple[str, Settings], keys: dict[str, str]
) -> None:
    # Headers that never end, sent a line at a time: the server must not keep buffering them.
    url, _ = api
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(f"GET /api/v2/me HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['read']}\r\n".encode())
        sent, answer = 0, b""
        while sent < 4 * MAX_REQUEST_HEAD_BYTES:
            try:
                sock.sendall(b"X-Line-%d: %s\r\n" % (sent, b"b" * 500))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 512
            sock.settimeout(0.01)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            finally:
                sock.settimeout(ANSWER_WITHIN_S)
            if answer:
                break
        answer += _rest_of(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent <= 2 * MAX_REQUEST_HEAD_BYTES


def _rest_of(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


@pytest.mark.parametrize("query", [
    "limit=" + "9" * 40, "carat_min=" + "1" * 5000, "shapes=" + ",".join(["ROUND"] * 2000),
    "&".join(["colors=D"] * 500), "next=" + "A" * 5000, "price_min=1e999999999", "sort=" + "x" * 3000,
    "count=" + "\u00ff" * 100, "limit=-1", "limit=0x10",
])
def test_absurd_parameters_are_a_quick_4xx(api: tuple[str, Settings], keys: dict[str, str], query: str) -> None:
    url, _ = api
    headers = {"X-API-Key": keys["read"]}
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN_S) as http:
        # A new server's first request pays once for what later ones reuse (the key's lookup, the pool's first
        # connection, the route tables): up to a second or more on a loaded machine. The point is that absurd
        # parameters are refused without real work, so the refusal is timed on a warm server.
        assert http.get("/api/v2/diamonds?limit=1", headers=headers).status_code == 200
        started = time.monotonic()
        response = http.get(f"/api/v2/diamonds?{query}", headers=headers)
        elapsed = time.monotonic() - started
    assert 400 <= response.status_code < 500, response.text[:300]
    assert elapsed < ANSWER_WITHIN_S, f"refused after {elapsed:.1f} s"


@pytest.mark.parametrize("path", ["/api/v2/diamonds/" + "9" * 40, "/api/v2/diamonds/-1", "/api/v2/pricing-rules/1e3",
                                  "/api/v2/analytics/runs/not-a-uuid", "/api/v2/diamonds/" + "1" * 5000])
def test_absurd_ids_are_a_quick_4xx(api: tuple[str, Settings], keys: dict[str, str], path: str) -> None:
    url, _ = api
    with httpx.Client(base_url=url, timeout=ANSWER_WITHIN_S) as http:
        response = http.get(path, headers={"X-API-Key": keys["admin"]})
        assert 400 <= response.status_code < 500, response.text[:300]


def test_an_idle_keep_alive_connection_is_closed(api: tuple[str, Settings], keys: dict[str, str]) -> None:
    url, settings = api
    request = f"GET /api/v2/me HTTP/1.1\r\nHost: x\r\nX-API-Key: {keys['read']}\r\n\r\n".encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=settings.api_keep_alive_s + 5) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:  # the head and the body may come in separate segments
            body += sock.recv(65536)
        started = time.monotonic()
        assert sock.recv(65536) == b"", "the server closed the idle connection"
        assert time.monotonic() - started < settings.api_keep_alive_s + 3
