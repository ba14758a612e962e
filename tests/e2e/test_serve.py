"""`opus serve` as a real process: it serves the API, works runs, and stops on SIGTERM losing nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from processes import free_port, start_serve

from opus.api.keys import create_key
from opus.db.pool import Database
from opus.sandbox.runner import RunningSandbox, run_sandbox

SIZE = 3_000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=SIZE, seed=13) as sb:
        yield sb


def run_status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def test_serve_works_a_run_and_stops_on_sigterm_without_losing_a_message(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    key = create_key(db, "serve-test", "admin")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(database_url, sandbox, port)
    try:
        assert httpx.get(f"{base}/api/v2/diamonds").status_code == 401
        started = httpx.post(f"{base}/api/v2/triggers/run", json={"type": "full"}, headers={"X-API-Key": key})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        time.sleep(1.5)  # some pages in, most still to come (the feed is throttled to 30 requests/s)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "a clean shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run_status(db, run_id) == "running", "stopped mid-run"
    proc = start_serve(database_url, sandbox, port)
    try:
        deadline = time.monotonic() + 120
        while run_status(db, run_id) != "completed" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert run_status(db, run_id) == "completed"
        found = httpx.get(f"{base}/api/v2/diamonds", params={"limit": 5}, headers={"X-API-Key": key})
        assert found.status_code == 200
        assert len(found.json()["items"]) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with db.connection() as conn:
        ids = [r["supplier_stone_id"] for r in conn.execute("SELECT supplier_stone_id FROM diamonds")]
    assert len(ids) == len(set(ids)) == SIZE, "nothing lost, nothing duplicated across the restart"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                    # pid (comm) state ppid ...: the command name may hold spaces, so split after its ")".
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.add(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_api_processes_share_the_socket_and_stop_with_serve(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    key = create_key(db, "serve-processes", "read")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(database_url, sandbox, port, API_PROCESSES="2")
    helpers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # The helper is the child that runs Python's multiprocessing spawn entry point.
            helpers = {c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)}
            if helpers and httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
            time.sleep(0.2)
        assert len(helpers) == 1, "API_PROCESSES=2: one helper beside the main process"
        # With the main process stopped, only the helper can accept: it answers, authenticated, on its own.
        proc.send_signal(signal.SIGSTOP)
        try:
            answered = httpx.get(f"{base}/api/v2/diamonds", params={"limit": 1}, headers={"X-API-Key": key},
                                 timeout=30)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert answered.status_code == 200, answered.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "a clean shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(_alive(h) for h in helpers), "the helper stopped with serve"
