"""`opus schedule` plans a run and exits; two `opus worker` processes share its work and finish it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from processes import OPUS, schedule_full, wait_for_run_end

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
    run_id = schedule_full(env)
    workers = [subprocess.Popen([*OPUS, "worker", "--workers", "2"], env=env) for _ in range(2)]
    try:
        assert wait_for_run_end(db, run_id) == "completed"
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
