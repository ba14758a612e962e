"""The per-credential rate limit holds across two `opus serve` processes on one database, over real HTTP: each
process alone would allow the whole limit, so per-process buckets would let twice it through."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from processes import free_port, start_serve

from opus.sandbox.runner import RunningSandbox

LIMIT = 120


@pytest.fixture
def servers(database_url: str, sandbox: RunningSandbox) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    with ThreadPoolExecutor(2) as pool:  # each takes seconds to come up: start them side by side
        procs = list(pool.map(lambda port: start_serve(database_url, sandbox, port,
                                                       RATE_LIMIT_PER_MINUTE=str(LIMIT)), ports))
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def test_two_servers_share_one_limit_per_credential(keys: dict[str, str], servers: list[str]) -> None:
    def hammer(url: str) -> list[int]:
        with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": keys["read"]}) as http:
            return [http.get("/api/v2/me").status_code for _ in range(LIMIT)]

    with ThreadPoolExecutor(4) as pool:
        answers = [code for codes in pool.map(hammer, [*servers, *servers]) for code in codes]
    allowed = answers.count(200)
    assert set(answers) == {200, 429}, set(answers)
    # The run takes a few seconds, during which the bucket refills at 2 a second: a little over LIMIT may pass,
    # never the LIMIT per process that per-process buckets allowed.
    assert LIMIT - 4 <= allowed <= LIMIT + 40, allowed
