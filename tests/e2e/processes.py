"""Running `opus` as real processes in tests: plan a run with `opus schedule`, wait for the run to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from opus.db.pool import Database

OPUS = [sys.executable, "-m", "opus"]


def schedule_full(env: dict[str, str]) -> str:
    """`opus schedule --full` as the nightly timer would; returns the run id it printed."""
    planned = subprocess.run([*OPUS, "schedule", "--full"], env=env, capture_output=True, text=True, check=True,
                             timeout=120)
    return str(json.loads(planned.stdout.strip().splitlines()[-1])["run_id"])


def run_status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    return str(row["status"]) if row else "missing"


def wait_for_run_end(db: Database, run_id: str, timeout_s: float = 120) -> str:
    """Poll until the run completes or fails (or the timeout passes); returns its status then."""
    deadline = time.monotonic() + timeout_s
    status = run_status(db, run_id)
    while status not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = run_status(db, run_id)
    return status
