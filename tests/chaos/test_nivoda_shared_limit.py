"""Two `opus worker` processes sharing one scheduled run are held to one Nivoda rate limit together, measured by the
sandbox: each on its own would send the limit, so together without the shared bucket they would send twice it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from processes import OPUS, schedule_full, wait_for_run_end

from opus.db.pool import Database
from opus.sandbox.config import Behaviour, Latency, SandboxConfig
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.traffic import assert_rate_held

SIZE = 1_500
LIMIT = 12


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    config = SandboxConfig(behaviour=Behaviour(latency=Latency(median_ms=100, sigma=0, cap_ms=1000)))
    with run_sandbox(diamonds=SIZE, seed=19, config=config) as sb:
        yield sb


def test_two_worker_processes_share_one_limit(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    env = os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint, "NIVODA_RATE_LIMIT_PER_S": str(LIMIT),
        "MIN_RECORDS_PER_WORKER": "100", "MAX_WORKERS": "10", "DENSITY_SCAN_PARALLELISM": "8",
    }
    run_id = schedule_full(env)
    httpx.post(f"{sandbox.base_url}/admin/reset", timeout=5)  # measure the workers' pages alone
    # Each process alone could send 4 / 0.1 s = 40 requests/s: the limit binds in both.
    workers = [subprocess.Popen([*OPUS, "worker", "--workers", "4"], env=env) for _ in range(2)]
    try:
        assert wait_for_run_end(db, run_id) == "completed"
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
    requests = httpx.get(f"{sandbox.base_url}/admin/stats", timeout=5).json()["requests"]
    assert requests["served"] >= SIZE // 50
    assert_rate_held(requests, LIMIT)
    busy = [n for n in requests["per_second"].values() if n >= LIMIT * 0.75]
    assert busy, "the workers kept the limit busy for at least one whole second"
