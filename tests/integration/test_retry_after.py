"""Nivoda's Retry-After, honoured through the worker on the local runtime: a throttled page comes back when Nivoda
said, not after the worker's own backoff. (The Service Bus path: tests/functions/test_function_triggers.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.local.runtime import LocalRuntime
from opus.pipeline.scheduler import schedule_run
from opus.ports import WORK_QUEUE
from opus.sandbox.inventory import Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.integration
RETRY_AFTER_S = 37


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(inventory=Inventory(100, seed=3)) as sb:
        yield sb


def test_a_page_nivoda_throttles_comes_back_at_its_retry_after(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    settings = load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_username=sandbox.username,
        nivoda_password=sandbox.password, nivoda_rate_limit_per_s=10_000, nivoda_read_attempts=1,
        min_records_per_worker=10_000, max_workers=1,
    )
    with LocalRuntime(settings, db=db) as runtime:
        plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL, trigger="test")
        copy_id = f"{plan.run_id}:0:0:attempt-1"
        sandbox.inventory.faults.configure(fail_next=[429], retry_after_s=RETRY_AFTER_S)
        runtime.start_consumers(workers=1, consolidators=0, housekeeping=False)
        deadline = time.monotonic() + 30
        while (copy := _message(db, copy_id)) is None:  # the worker thread's outcome, settled on the queue
            assert time.monotonic() < deadline, "the throttled page was never retried"
            time.sleep(0.05)
        runtime.stop_consumers()

    assert copy["delay_s"] == RETRY_AFTER_S, "scheduled at now + Retry-After, not at a backoff"
    original = _message(db, f"{plan.run_id}:0:0")
    assert original is not None
    assert original["state"] == "completed", "the original is settled; its copy carries the retry"


def _message(db: Database, message_id: str) -> dict[str, object] | None:
    with db.connection() as conn:
        row: dict[str, object] | None = conn.execute(
            "SELECT state, extract(epoch FROM visible_at - enqueued_at)::float8 AS delay_s FROM queue_messages"
            " WHERE queue = %s AND message_id = %s", (WORK_QUEUE, message_id)).fetchone()
    return row
