"""Latency, throttling and the production-like preset of the sandbox, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opus.domain.models import FeedQuery
from opus.feeds import NivodaClient
from opus.sandbox.config import Behaviour, Latency, SandboxConfig
from opus.sandbox.runner import RunningSandbox, run_sandbox

AUTH = """query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } } }"""
COUNT = """query Count($token: String!, $query: DiamondQuery!) {
  as(token: $token) { diamonds_by_query_count(query: $query) } }"""


def token_of(sb: RunningSandbox) -> str:
    body = httpx.post(sb.endpoint, json={"query": AUTH, "variables": {"username": "sandbox", "password": "sandbox"}},
                      timeout=30).json()
    token: str = body["data"]["authenticate"]["username_and_password"]["token"]
    return token


def admin(sb: RunningSandbox, name: str, **payload: Any) -> dict[str, Any]:
    response = httpx.post(f"{sb.base_url}/admin/{name}", json=payload, timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def burst(sb: RunningSandbox, token: str, n: int) -> list[httpx.Response]:
    """`n` count requests in flight at once."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        body = {"query": COUNT, "variables": {"token": token, "query": {}}}
        return list(await asyncio.gather(*(http.post(sb.endpoint, json=body) for _ in range(n))))


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=200, seed=29) as running:
        yield running


def test_latency_is_waited_out_concurrently(sandbox: RunningSandbox) -> None:
    token = token_of(sandbox)
    admin(sandbox, "config", latency={"median_ms": 300, "sigma": 0})
    started = time.perf_counter()
    responses = asyncio.run(burst(sandbox, token, 200))
    elapsed = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * 200
    assert all(r.json()["data"]["as"]["diamonds_by_query_count"] == 200 for r in responses)
    assert 0.3 <= elapsed < 12  # 200 x 0.3 s would be 60 s one after another


def test_latency_follows_its_distribution_per_request(sandbox: RunningSandbox) -> None:
    token = token_of(sandbox)
    admin(sandbox, "config", latency={"median_ms": 40, "sigma": 0.5, "cap_ms": 120})
    with httpx.Client(timeout=10) as http:
        took = []
        for _ in range(25):
            started = time.perf_counter()
            http.post(sandbox.endpoint, json={"query": COUNT, "variables": {"token": token, "query": {}}})
            took.append(time.perf_counter() - started)
    took.sort()
    assert 0.025 <= took[len(took) // 2] <= 0.2  # median near 40 ms, with room for a busy machine
    assert took[0] >= 0.005  # nobody skips the wait


def test_throttling_answers_429_above_the_rate_and_stats_count_it(sandbox: RunningSandbox) -> None:
    token = token_of(sandbox)
    admin(sandbox, "reset")
    admin(sandbox, "config", throttle_rps=10)
    responses = asyncio.run(burst(sandbox, token, 40))
    statuses = [r.status_code for r in responses]
    throttled = [r for r in responses if r.status_code == 429]
    assert statuses.count(200) >= 10
    assert throttled  # 40 at once against 10/s; how many depends on how fast a busy machine sends them
    assert all(int(r.headers["retry-after"]) >= 1 for r in throttled)
    requests = httpx.get(f"{sandbox.base_url}/admin/stats", timeout=10).json()["requests"]
    assert requests["served"] == statuses.count(200)
    assert requests["throttled"] == len(throttled)
    assert requests["max_per_second"] <= 10
    assert sum(requests["per_second"].values()) == requests["served"]


def test_stats_let_a_test_check_a_clients_rate_limit_from_the_server(sandbox: RunningSandbox) -> None:
    admin(sandbox, "reset")
    with NivodaClient(sandbox.endpoint, sandbox.username, sandbox.password, rate_limit_per_s=8) as feed:
        started = time.perf_counter()
        for _ in range(20):
            assert feed.count(FeedQuery()) == 200
        elapsed = time.perf_counter() - started
    requests = httpx.get(f"{sandbox.base_url}/admin/stats", timeout=10).json()["requests"]
    assert requests["served"] >= 21  # 20 counts and at least one authentication
    assert requests["max_per_second"] <= 9  # a bucket of 8/s may start with one token in hand
    assert elapsed >= 1.5


def test_run_sandbox_production_like_wires_the_preset() -> None:
    fast = SandboxConfig.production_like().with_behaviour(latency=Latency(median_ms=5, sigma=0))
    with run_sandbox(diamonds=400, seed=3, config=fast) as sb:
        shown = httpx.get(f"{sb.base_url}/admin/config", timeout=10).json()
        assert shown == fast.behaviour.as_json()
        assert sb.inventory.realistic
        assert httpx.get(f"{sb.base_url}/admin/faults", timeout=10).json()["short_page_rate"] == 0.02
    with run_sandbox(diamonds=50, seed=3, production_like=True) as sb:
        assert sb.inventory.behaviour.current == SandboxConfig.production_like().behaviour
    with run_sandbox(diamonds=50, seed=3) as sb:
        assert sb.inventory.behaviour.current == Behaviour()
        assert not sb.inventory.realistic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_opus_sandbox_production_like_serves() -> None:
    port = free_port()
    # the preset as given, except a short latency so the test does not wait seconds per request
    command = [sys.executable, "-m", "opus", "sandbox", "--production-like", "--diamonds", "2000",
               "--port", str(port), "--latency-median-ms", "20"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                if httpx.get(f"{base}/health", timeout=1).json() == {"status": "ok", "diamonds": 2000}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "opus sandbox --production-like did not start"
            time.sleep(0.2)
        config = httpx.get(f"{base}/admin/config", timeout=10).json()
        assert config["count_noise"] is True
        assert config["throttle_rps"] == 30.0
        assert config["latency"]["median_ms"] == 20.0
        stats = httpx.get(f"{base}/admin/stats", timeout=10).json()
        assert stats["availability"]["SOLD"] > 0  # only the realistic inventory sells stones before any order
        endpoint = f"{base}/api/diamonds"
        auth = httpx.post(endpoint, json={"query": AUTH, "variables": {"username": "sandbox", "password": "sandbox"}},
                          timeout=30).json()
        token = auth["data"]["authenticate"]["username_and_password"]["token"]
        query = {"dollar_value": {"from": 0, "to": 10**7}}
        count = httpx.post(endpoint, json={"query": COUNT, "variables": {"token": token, "query": query}},
                           timeout=30).json()["data"]["as"]["diamonds_by_query_count"]
        assert 1900 <= count < 2000  # about 2 % undercounted
    finally:
        proc.terminate()
        proc.wait(timeout=30)
