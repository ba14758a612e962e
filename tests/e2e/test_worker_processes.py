"""`opus schedule` plans a run and exits; two `opus worker` processes share its work and finish it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from opus.db.pool import Database
from opus.sandbox.runner import RunningSandbox, run_sandbox

SIZE = 2_500


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=SIZE, seed=17) as sb:
        yield sb


def test_two_worker_processes_finish_a_scheduled_run(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    env = os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint, "NIVODA_RATE_LIMIT_PER_S": "10000",
        "MIN_RECORDS_PER_WORKER": "300", "MAX_WORKERS": "6",
    }
    opus = [sys.executable, "-m", "opus"]
    planned = subprocess.run([*opus, "schedule", "--full"], env=env, capture_output=True, text=True, check=True,
                             timeout=120)
    run_id = json.loads(planned.stdout.strip().splitlines()[-1])["run_id"]
    workers = [subprocess.Popen([*opus, "worker", "--workers", "2"], env=env) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        status = "running"
        while status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            with db.connection() as conn:
                row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
            status = row["status"] if row else "missing"
        assert status == "completed"
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(timeout=60) for w in workers]
    assert codes == [0, 0], "both stop cleanly"
    with db.connection() as conn:
        per_worker = conn.execute(
            "SELECT count(DISTINCT partition) AS partitions, sum(pages) AS pages FROM partition_progress"
            " WHERE run_id = %s", (run_id,)
        ).fetchone()
        ids = [r["supplier_stone_id"] for r in conn.execute("SELECT supplier_stone_id FROM diamonds")]
    assert per_worker is not None
    assert per_worker["partitions"] > 1
    assert len(ids) == len(set(ids)) == SIZE
