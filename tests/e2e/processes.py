"""Running `opus` as real processes in tests: plan a run with `opus schedule`, serve with `opus serve`, wait for
the run to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx

from opus.db.pool import Database
from opus.sandbox.runner import RunningSandbox

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(database_url: str, sb: RunningSandbox, port: int, **extra: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sb.endpoint, "NIVODA_RATE_LIMIT_PER_S": "30",
        "MIN_RECORDS_PER_WORKER": "300", "MAX_WORKERS": "4", **extra,
    }
    proc = subprocess.Popen([*OPUS, "serve", "--port", str(port)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "opus serve exited early"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("opus serve did not become healthy")
