"""An Azure-shaped run end to end: the functions of function_app.py carry a full and then an incremental run of the
sandbox to `completed`, with Service Bus deliveries (scheduled times honoured, failed invocations redelivered),
the real orchestrator replayed on the events the workers raised, its activity run, and the watermark in Azurite.

Faults on the way: a worker invocation that throws after storing its page (the continuation's send fails), an
orchestration event the Durable extension fails to take, and duplicate deliveries of a page, of a partition's last
message and of a consolidation link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from azure.servicebus.exceptions import ServiceBusConnectionError
from azure_stack import AzureStack, Conveyor, StackFactory, stepped_now

from opus.api.keys import create_key
from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import ConsolidateMessage
from opus.ports import WORK_QUEUE
from opus.sandbox.inventory import Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.fakes import SteppableClock
from opus.testing.servicebus_double import DeliveredMessage

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type:DeprecationWarning"),
    # A second event of a name whose wait is done makes the SDK warn and park it: the duplicate we deliver.
    pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning"),
]
STONES = 2_000


@pytest.fixture(scope="module")
def clock() -> SteppableClock:
    return stepped_now()


@pytest.fixture(scope="module")
def sandbox(clock: SteppableClock) -> Iterator[RunningSandbox]:
    inventory = Inventory(STONES, seed=31, clock=lambda: clock.now().timestamp())
    with run_sandbox(inventory=inventory) as sb:
        yield sb


@pytest.fixture
def stack(make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock) -> AzureStack:
    settings = load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_username=sandbox.username,
        nivoda_password=sandbox.password, nivoda_rate_limit_per_s=10_000, min_records_per_worker=400,
        max_workers=4, worker_page_size=50, consolidator_batch_size=500, consolidator_concurrency=2,
    )
    return make_stack(settings, clock)


def run_row(db: Database, run_id: str) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute("SELECT * FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return row


def latest_run_id(db: Database) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT run_id FROM run_metadata ORDER BY started_at DESC LIMIT 1").fetchone()
    assert row is not None
    return str(row["run_id"])


def partition_status(db: Database, run_id: str, partition: int) -> str | None:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM partition_progress WHERE run_id = %s AND partition = %s",
                           (run_id, partition)).fetchone()
    return None if row is None else str(row["status"])


def stored_diamonds(db: Database) -> dict[str, dict[str, Any]]:
    with db.connection() as conn:
        rows = conn.execute("SELECT supplier_stone_id, feed_price, status FROM diamonds").fetchall()
    return {r["supplier_stone_id"]: r for r in rows}


def assert_diamonds_match(db: Database, sandbox: RunningSandbox) -> None:
    stored = stored_diamonds(db)
    stones = sandbox.inventory.stones()
    assert set(stored) == {s.stone_id for s in stones}, "every sandbox stone, and nothing else"
    wrong = [s.stone_id for s in stones if stored[s.stone_id]["feed_price"] != Decimal(s.price_cents) / 100]
    assert not wrong, f"{len(wrong)} feed prices differ from the sandbox"
    assert {r["status"] for r in stored.values()} == {"active"}


def assert_orchestration_settled(stack: AzureStack, run_id: str, partitions: int) -> None:
    instance = stack.durable.instances[run_id]
    assert instance.status == "Completed"
    assert instance.output == {"run_id": run_id, "outcome": "settled", "result": "consolidating"}
    assert [(name, input_) for name, input_, _ in instance.activities] == [("settle_run", {"run_id": run_id})]
    assert {name for name, _ in instance.raised} == {f"partition_done_{p}" for p in range(partitions)}


def test_a_full_then_an_incremental_run_through_the_functions(
    stack: AzureStack, db: Database, sandbox: RunningSandbox, clock: SteppableClock
) -> None:
    # --- the full run, from the nightly timer, with a crash, a refused event and duplicates -------------------------
    stack.nightly()
    run_id = latest_run_id(db)
    partitions = int(run_row(db, run_id)["partitions_total"])
    assert partitions >= 3
    crashed = f"{run_id}:0:0"
    first_link = ConsolidateMessage(run_id, 0, 0).message_id

    def crash_after_storing(message: DeliveredMessage, delivery_count: int) -> None:
        if message.message_id == crashed and delivery_count == 1:
            # The page is stored, then sending its continuation fails: the invocation throws.
            stack.servicebus.fail_next(ServiceBusConnectionError(message="the link was detached"))

    def lost_lock(message: DeliveredMessage) -> bool:
        last_of_partition_2 = message.queue == WORK_QUEUE and message.body.get("partition") == 2 and (
            partition_status(db, run_id, 2) == "succeeded")
        return message.message_id in (f"{run_id}:1:0", first_link) or last_of_partition_2

    # The first partition event raised is refused by the extension (its storage blinked).
    stack.durable.fail_next(500, "Microsoft.Azure.WebJobs.Extensions.DurableTask: storage unavailable")
    conveyor = Conveyor(stack, before_invocation=crash_after_storing, duplicate=lost_lock)
    conveyor.run_until(lambda: run_row(db, run_id)["status"] in ("completed", "failed"))

    full = run_row(db, run_id)
    assert full["status"] == "completed", full["failure_reason"]
    assert full["run_type"] == "full"
    assert full["consolidated"] == STONES, "every stone consolidated exactly once"
    assert full["errors"] == 0
    assert_diamonds_match(db, sandbox)
    assert stack.watermarks.get("nivoda") == full["updated_to"]
    assert_orchestration_settled(stack, run_id, partitions)
    # The faults really happened, and each cost one more delivery, none a dead letter.
    failed = {message_id for message_id, _, _ in conveyor.failures}
    assert crashed in failed
    assert conveyor.invocations[crashed] == 2
    assert len(conveyor.failures) == 2, conveyor.failures
    assert conveyor.dead_lettered == []
    assert set(conveyor.duplicated) >= {f"{run_id}:1:0", first_link}
    events = [name for name, _ in stack.durable.instances[run_id].raised]
    assert events.count("partition_done_2") == 2, "the duplicate of its last message announced it again"

    # --- changes at the feed, then an incremental run from the API's trigger route ---------------------------------
    clock.advance(120)
    repriced = set(sandbox.inventory.reprice(0.1, 1.07, seed=3))
    added = {s.stone_id for s in sandbox.inventory.add(40)}
    clock.advance(60)
    admin = {"X-API-Key": create_key(db, "ops", "admin")}
    response = stack.http("POST", "/api/v2/triggers/run", headers=admin, body={"type": "incremental"})
    assert response.status_code == 202, response.get_body()
    incremental_id = json.loads(response.get_body())["run_id"]

    Conveyor(stack).run_until(lambda: run_row(db, incremental_id)["status"] in ("completed", "failed"))

    incremental = run_row(db, incremental_id)
    assert incremental["status"] == "completed", incremental["failure_reason"]
    assert incremental["run_type"] == "incremental"
    assert incremental["consolidated"] == len(repriced | added), "only the changed stones, each once"
    assert_diamonds_match(db, sandbox)
    assert stack.watermarks.get("nivoda") == incremental["updated_to"] > full["updated_to"]
    assert_orchestration_settled(stack, incremental_id, int(incremental["partitions_total"]))
    status = stack.http("GET", f"/api/v2/runs/{incremental_id}/orchestration", headers=admin)
    assert json.loads(status.get_body())["runtime_status"] == "Completed"
