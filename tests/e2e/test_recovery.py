"""Recovery after SIGKILL, with real processes: how long a dead worker's partitions and a dead planner's run stay
stuck (issue 7: 337-346 s and six hours before; now seconds and minutes), and `opus run` resuming a run killed while
it fetched, with default settings where it matters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opus.db.pool import Database
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.e2e
SIZE = 2_000
OPUS = [sys.executable, "-m", "opus"]


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=SIZE, seed=41) as sb:
        yield sb


def environment(database_url: str, sb: RunningSandbox, **extra: str) -> dict[str, str]:
    return os.environ | {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sb.endpoint, "NIVODA_RATE_LIMIT_PER_S": "10000",
        "MIN_RECORDS_PER_WORKER": "250", "MAX_WORKERS": "4",
    } | extra


def rows(db: Database, query: str, *params: Any) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(query, params).fetchall()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll until `predicate` holds; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def progress(db: Database, run_id: str) -> dict[int, tuple[str, int]]:
    return {r["partition"]: (r["status"], r["pages"]) for r in rows(
        db, "SELECT partition, status, pages FROM partition_progress WHERE run_id = %s", run_id)}


def test_a_killed_workers_partitions_resume_within_30_seconds(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    env = environment(database_url, sandbox)  # the default lock (QUEUE_VISIBILITY_TIMEOUT_S) is what is tested
    planned = subprocess.run([*OPUS, "schedule", "--full"], env=env, capture_output=True, text=True, check=True,
                             timeout=120)
    run_id = json.loads(planned.stdout.strip().splitlines()[-1])["run_id"]
    sandbox.inventory.faults.configure(latency_ms=700)  # every page is in flight for a while
    first = subprocess.Popen([*OPUS, "worker", "--workers", "4", "--consolidators", "0"], env=env)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: all(pages >= 1 for _s, pages in progress(db, run_id).values()), 60,
                 "every partition stored a page")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = progress(db, run_id)
        second = subprocess.Popen([*OPUS, "worker", "--workers", "4", "--consolidators", "1"], env=env)

        def all_resumed() -> bool:
            now = progress(db, run_id)
            return all(now[p][1] > pages or now[p][0] in ("succeeded", "failed") for p, (_s, pages) in at_kill.items())

        resumed_in = wait_for(all_resumed, 45, "the killed worker's partitions resumed")
        print(f"the killed worker's partitions resumed {resumed_in:.1f} s after the kill")
        assert resumed_in < 30, f"partitions resumed after {resumed_in:.1f} s"
        sandbox.inventory.faults.configure()
        wait_for(lambda: rows(db, "SELECT status FROM run_metadata WHERE run_id = %s", run_id)[0]["status"]
                 in ("completed", "failed"), 120, "the run ended")
    finally:
        sandbox.inventory.faults.configure()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    [run] = rows(db, "SELECT status FROM run_metadata WHERE run_id = %s", run_id)
    assert run["status"] == "completed"
    stones = rows(db, "SELECT supplier_stone_id FROM diamonds WHERE status = 'active'")
    assert {r["supplier_stone_id"] for r in stones} == {s.stone_id for s in sandbox.inventory.stones()}


def test_a_run_killed_while_planning_frees_its_feed_within_minutes(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    # A short planning timeout keeps the test short; the default (120 s) is the same rule, longer.
    env = environment(database_url, sandbox, PLANNING_TIMEOUT_S="6")
    sandbox.inventory.faults.configure(latency_ms=400)  # the density scan takes seconds: a kill lands in it
    planner = subprocess.Popen([*OPUS, "run", "--full"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: bool(rows(db, "SELECT 1 FROM run_metadata WHERE status = 'planning'")), 60,
                 "the run is planning")
        time.sleep(1.0)
        planner.send_signal(signal.SIGKILL)
        planner.wait(timeout=10)
    finally:
        if planner.poll() is None:
            planner.kill()
    assert rows(db, "SELECT status FROM run_metadata") == [{"status": "planning"}], "killed mid-planning"
    sandbox.inventory.faults.configure(latency_ms=20)
    started = time.monotonic()
    again = subprocess.run([*OPUS, "run", "--full", "--json"], env=env, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - started
    print(f"the next run completed {took:.1f} s after the planner was killed")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "completed"
    assert took < 180, f"the next run completed {took:.0f} s after the kill"
    statuses = sorted(r["status"] for r in rows(db, "SELECT status FROM run_metadata"))
    assert statuses == ["completed"], "the killed run was resumed, not left behind"


def test_opus_run_resumes_a_run_killed_while_fetching(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    env = environment(database_url, sandbox)  # the default lock (QUEUE_VISIBILITY_TIMEOUT_S) is what is tested
    sandbox.inventory.faults.configure(latency_ms=700)  # every page is in flight for a while
    first = subprocess.Popen([*OPUS, "run", "--full"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def fetching() -> bool:
            runs = rows(db, "SELECT run_id FROM run_metadata WHERE status = 'running'")
            return bool(runs) and all(pages >= 1 for _s, pages in progress(db, str(runs[0]["run_id"])).values())

        wait_for(fetching, 60, "every partition of the run stored a page")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    [killed] = rows(db, "SELECT run_id, status FROM run_metadata")
    run_id = str(killed["run_id"])
    assert killed["status"] == "running", "killed mid-fetch"
    at_kill = progress(db, run_id)
    assert any(status not in ("succeeded", "failed") for status, _pages in at_kill.values())
    sandbox.inventory.faults.configure()
    started = time.monotonic()
    again = subprocess.Popen([*OPUS, "run", "--full", "--json"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        def resumed() -> bool:
            now = progress(db, run_id)
            return all(now[p][1] > pages or now[p][0] in ("succeeded", "failed") for p, (_s, pages) in at_kill.items())

        resumed_in = wait_for(resumed, 60, "the killed run's partitions resumed")
        out, _ = again.communicate(timeout=120)
    finally:
        if again.poll() is None:
            again.kill()
    took = time.monotonic() - started
    print(f"`opus run` resumed the killed run's partitions after {resumed_in:.1f} s and completed it in {took:.1f} s")
    assert again.returncode == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["run_id"], summary["status"]) == (run_id, "completed"), "the same run, resumed"
    assert resumed_in < 30, f"partitions resumed after {resumed_in:.1f} s"
    # The locks' 20 s, then the rest of the fetch and the consolidation: 28 s on a loaded 2-core machine.
    assert took < 60, f"the resumed run completed after {took:.0f} s"
    assert rows(db, "SELECT run_id::text, status FROM run_metadata") == [{"run_id": run_id, "status": "completed"}]
    stones = rows(db, "SELECT supplier_stone_id FROM diamonds WHERE status = 'active'")
    assert {r["supplier_stone_id"] for r in stones} == {s.stone_id for s in sandbox.inventory.stones()}
