"""Each function of function_app.py invoked as the worker invokes it, on the real PostgreSQL and the sandbox over HTTP,
with the Service Bus SDK double, Azurite for the watermark and the Durable host double."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from azure_stack import AzureStack, Conveyor, StackFactory, stepped_now, user_function
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.keys import create_key
from opus.azure.client_address import PlatformClientAddress, platform_client
from opus.azure.triggers import MessageGivenUp
from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.pipeline.control import RunControl
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE
from opus.sandbox.inventory import Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.fakes import RecordingCoordinator, SteppableClock
from opus.testing.servicebus_double import DeliveredMessage

pytestmark = [
    pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning"),
]
STONES = 300
PAGE = 50


@pytest.fixture(scope="module")
def clock() -> SteppableClock:
    return stepped_now()


@pytest.fixture(scope="module")
def sandbox(clock: SteppableClock) -> Iterator[RunningSandbox]:
    inventory = Inventory(STONES, seed=21, clock=lambda: clock.now().timestamp())
    with run_sandbox(inventory=inventory) as sb:
        yield sb


def settings_for(database_url: str, sb: RunningSandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "nivoda_endpoint": sb.endpoint, "nivoda_username": sb.username,
        "nivoda_password": sb.password, "nivoda_rate_limit_per_s": 10_000, "nivoda_read_attempts": 1,
        "min_records_per_worker": 100, "max_workers": 3, "worker_page_size": PAGE, "consolidator_batch_size": 100,
        "consolidator_concurrency": 1,
    }
    return load_settings(**(values | overrides))


@pytest.fixture
def stack(make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock) -> AzureStack:
    return make_stack(settings_for(database_url, sandbox), clock)


def one_row(db: Database, query: str, *params: Any) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row


def run_status(db: Database, run_id: str) -> str:
    return str(one_row(db, "SELECT status FROM run_metadata WHERE run_id = %s", run_id)["status"])


def scheduled_run(stack: AzureStack, db: Database) -> str:
    stack.nightly()
    return str(one_row(db, "SELECT run_id FROM run_metadata ORDER BY started_at DESC LIMIT 1")["run_id"])


def completed(stack: AzureStack, db: Database) -> str:
    run_id = scheduled_run(stack, db)
    Conveyor(stack).run_until(lambda: run_status(db, run_id) == "completed")
    return run_id


# --- timers --------------------------------------------------------------------------------------------------------
def test_the_nightly_timer_plans_a_run_and_starts_its_orchestration_before_enqueueing(
    stack: AzureStack, db: Database
) -> None:
    run_id = scheduled_run(stack, db)

    run = one_row(db, "SELECT status, run_type, trigger, partitions_total FROM run_metadata WHERE run_id = %s", run_id)
    assert (run["status"], run["run_type"], run["trigger"]) == ("running", "full", "schedule")
    (start,) = stack.durable.requests
    assert (start.method, start.path) == ("POST", f"orchestrators/run_orchestrator/{run_id}")
    assert start.witnessed == 0, "no work item may be sent before the orchestration exists"
    first_pages = stack.servicebus.sent(WORK_QUEUE)
    assert len(first_pages) == run["partitions_total"] > 1
    assert {m.message_id for m in first_pages} == {f"{run_id}:{p}:0" for p in range(run["partitions_total"])}
    instance = stack.durable.instances[run_id]
    assert instance.input["partitions"] == list(range(run["partitions_total"]))


def test_the_housekeeping_timer_fails_a_run_past_its_deadline(
    make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock, db: Database
) -> None:
    stack = make_stack(settings_for(database_url, sandbox, run_deadline_minutes=1), clock)
    run_id = scheduled_run(stack, db)
    clock.advance(61)

    stack.housekeeping()

    assert run_status(db, run_id) == "failed"


# --- Service Bus: work items -----------------------------------------------------------------------------------------
def test_a_work_item_stores_its_page_and_sends_the_continuation(stack: AzureStack, db: Database) -> None:
    run_id = scheduled_run(stack, db)
    first = next(m for m in stack.due(WORK_QUEUE) if m.message_id == f"{run_id}:0:0")

    stack.invoke(first)

    stored = one_row(db, "SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE run_id = %s", run_id)
    assert stored["n"] == PAGE
    assert stack.servicebus.sent(WORK_QUEUE)[-1].message_id == f"{run_id}:0:{PAGE}"
    assert one_row(db, "SELECT next_offset FROM partition_progress WHERE run_id = %s AND partition = 0",
                   run_id)["next_offset"] == PAGE


def test_a_partition_that_ends_raises_its_event_on_the_run_orchestration(stack: AzureStack, db: Database) -> None:
    run_id = scheduled_run(stack, db)
    due = [m for m in stack.due(WORK_QUEUE) if m.message_id.startswith(f"{run_id}:0:")]
    while due:
        for message in due:
            stack.invoke(message)
        due = [m for m in stack.due(WORK_QUEUE) if m.message_id.startswith(f"{run_id}:0:")]

    assert stack.durable.instances[run_id].raised == [("partition_done_0", {"ok": True})]
    assert one_row(db, "SELECT status FROM partition_progress WHERE run_id = %s AND partition = 0",
                   run_id)["status"] == "succeeded"


def test_a_page_the_feed_fails_is_retried_by_a_scheduled_copy_and_the_message_completes(
    stack: AzureStack, db: Database, sandbox: RunningSandbox, clock: SteppableClock
) -> None:
    run_id = scheduled_run(stack, db)
    first = next(m for m in stack.due(WORK_QUEUE) if m.message_id == f"{run_id}:0:0")
    sandbox.inventory.faults.configure(rate_500=1.0)
    try:
        stack.invoke(first)  # returns: the standard binding completes the original
    finally:
        sandbox.inventory.faults.configure()

    retry = stack.servicebus.sent(WORK_QUEUE)[-1]
    assert retry.message_id == f"{run_id}:0:0:attempt-1"
    assert retry.scheduled_enqueue_time_utc is not None
    assert retry.scheduled_enqueue_time_utc > clock.now()
    assert json.loads(b"".join(retry.body)) == {"run_id": run_id, "partition": 0, "offset": 0}
    assert one_row(db, "SELECT attempts FROM partition_progress WHERE run_id = %s AND partition = 0",
                   run_id)["attempts"] == 1


def test_a_page_nivoda_throttles_is_retried_by_a_copy_scheduled_at_its_retry_after(
    stack: AzureStack, db: Database, sandbox: RunningSandbox, clock: SteppableClock
) -> None:
    run_id = scheduled_run(stack, db)
    first = next(m for m in stack.due(WORK_QUEUE) if m.message_id == f"{run_id}:0:0")
    sandbox.inventory.faults.configure(fail_next=[429], retry_after_s=37)
    try:
        stack.invoke(first)
    finally:
        sandbox.inventory.faults.configure()

    retry = stack.servicebus.sent(WORK_QUEUE)[-1]
    assert retry.message_id == f"{run_id}:0:0:attempt-1"
    assert retry.scheduled_enqueue_time_utc == clock.now() + timedelta(seconds=37), "Retry-After, not a backoff"


def test_a_message_that_can_never_succeed_raises_so_that_it_is_dead_lettered(stack: AzureStack) -> None:
    malformed = DeliveredMessage(WORK_QUEUE, "bad-1", {"run_id": "x"}, "application/json", stack.clock.now())

    with pytest.raises(MessageGivenUp, match="given up"):
        stack.invoke(malformed)


# --- Service Bus: consolidation ------------------------------------------------------------------------------------
def test_a_consolidate_message_consolidates_one_slice_and_sends_the_next_link(
    make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock, db: Database
) -> None:
    # A slice ends after its first batch: each message consolidates one batch, then continues.
    stack = make_stack(settings_for(database_url, sandbox, consolidator_slice_s=0.001), clock)
    run_id = scheduled_run(stack, db)
    Conveyor(stack).run_until(lambda: run_status(db, run_id) == "consolidating", queues=(WORK_QUEUE,))
    (first,) = stack.due(CONSOLIDATE_QUEUE)

    stack.invoke(first)

    assert one_row(db, "SELECT consolidated FROM run_metadata WHERE run_id = %s", run_id)["consolidated"] == 100
    assert one_row(db, "SELECT count(*) AS n FROM diamonds")["n"] == 100
    following = stack.servicebus.sent(CONSOLIDATE_QUEUE)[-1]
    assert following.message_id != first.message_id
    assert json.loads(b"".join(following.body))["run_id"] == run_id


# --- activities ----------------------------------------------------------------------------------------------------
def test_the_fail_activity_fails_the_run_and_says_whether_it_did(stack: AzureStack, db: Database) -> None:
    run_id = scheduled_run(stack, db)
    fail = user_function("fail_run")

    assert fail({"run_id": run_id, "reason": "deadline exceeded"}) is True
    assert fail({"run_id": run_id, "reason": "deadline exceeded"}) is False
    assert one_row(db, "SELECT status, failure_reason FROM run_metadata WHERE run_id = %s", run_id) == {
        "status": "failed", "failure_reason": "deadline exceeded"}


def test_the_settle_activity_waits_while_partitions_run(stack: AzureStack, db: Database) -> None:
    run_id = scheduled_run(stack, db)

    assert user_function("settle_run")({"run_id": run_id}) == "waiting"
    assert user_function("settle_run")(json.dumps({"run_id": run_id})) == "waiting"


# --- HTTP ------------------------------------------------------------------------------------------------------------
def test_health_is_anonymous_and_the_api_needs_credentials(stack: AzureStack) -> None:
    assert stack.http("GET", "/health").status_code == 200
    response = stack.http("GET", "/api/v2/diamonds")
    assert response.status_code == 401
    assert json.loads(response.get_body())["error"]["code"] == "unauthorized"


def test_the_http_function_answers_a_search_through_the_asgi_app(stack: AzureStack, db: Database) -> None:
    completed(stack, db)
    key = create_key(db, "reader", "read")

    response = stack.http("GET", "/api/v2/diamonds?limit=5", headers={"X-API-Key": key})

    assert response.status_code == 200, response.get_body()
    body = json.loads(response.get_body())
    assert len(body["items"]) == 5


def failed_authentications(
    stack: AzureStack, forwarded_for: Callable[[int], str], times: int = 6,
) -> list[int]:
    return [stack.http("GET", "/api/v2/diamonds?limit=1", headers={
        "X-API-Key": "opus_not-a-key", "X-Forwarded-For": forwarded_for(i)}).status_code for i in range(times)]


def test_failed_authentications_are_counted_per_caller_as_the_front_end_names_it(
    make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock, db: Database
) -> None:
    # The Functions adapter gives the app no client address; the platform's front end names it in X-Forwarded-For.
    stack = make_stack(settings_for(database_url, sandbox, auth_failures_per_minute=5), clock)
    reader = create_key(db, "reader", "read")

    guesser = failed_authentications(stack, lambda i: f"203.0.113.7:{50000 + i}")
    other = stack.http("GET", "/api/v2/diamonds?limit=1",
                       headers={"X-API-Key": reader, "X-Forwarded-For": "198.51.100.2:40000"})
    other_v6 = stack.http("GET", "/api/v2/diamonds?limit=1",
                          headers={"X-API-Key": reader, "X-Forwarded-For": "[2001:db8::2]:40000"})

    assert guesser == [401, 401, 401, 401, 401, 429]
    assert (other.status_code, other_v6.status_code) == (200, 200), "another caller is not locked out"


def test_a_guesser_cannot_escape_the_limit_by_writing_its_own_forwarded_for(
    make_stack: StackFactory, database_url: str, sandbox: RunningSandbox, clock: SteppableClock
) -> None:
    # What the caller sends stands before the entry the front end appends: only the last entry is believed.
    stack = make_stack(settings_for(database_url, sandbox, auth_failures_per_minute=5), clock)

    spoofed = failed_authentications(stack, lambda i: f"10.0.0.{i}, 192.0.2.{i}, 203.0.113.7:{50000 + i}")

    assert spoofed == [401, 401, 401, 401, 401, 429]


@pytest.mark.parametrize(("header", "client"), [
    ("203.0.113.7:51234", ("203.0.113.7", 51234)),
    ("10.1.1.1, 203.0.113.7:51234", ("203.0.113.7", 51234)),
    ("[2001:DB8::1]:443", ("2001:db8::1", 443)),
    ("2001:db8::1", ("2001:db8::1", 0)),
    ("203.0.113.7", ("203.0.113.7", 0)),
    ("203.0.113.7:51234, not-an-address", None),
    ("", None),
])
def test_the_platforms_entry_is_the_last_of_the_header(header: str, client: tuple[str, int] | None) -> None:
    assert platform_client([(b"x-forwarded-for", header.encode())]) == client


def test_the_forwarded_header_is_ignored_where_the_scope_knows_its_client() -> None:
    seen: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    scope = {"type": "http", "client": ("192.0.2.10", 5000), "headers": [(b"x-forwarded-for", b"203.0.113.7")]}
    asyncio.run(PlatformClientAddress(app)(scope, None, None))  # type: ignore[arg-type]

    assert seen == [("192.0.2.10", 5000)]


def test_the_trigger_route_starts_a_run_and_its_orchestration_as_the_timer_does(
    stack: AzureStack, db: Database
) -> None:
    key = create_key(db, "ops", "admin")

    response = stack.http("POST", "/api/v2/triggers/run", headers={"X-API-Key": key}, body={"type": "full"})

    assert response.status_code == 202, response.get_body()
    run_id = json.loads(response.get_body())["run_id"]
    (start,) = stack.durable.requests
    assert start.path == f"orchestrators/run_orchestrator/{run_id}"
    assert start.witnessed == 0
    assert {m.message_id for m in stack.servicebus.sent(WORK_QUEUE)} >= {f"{run_id}:0:0"}
    assert one_row(db, "SELECT trigger FROM run_metadata WHERE run_id = %s", run_id)["trigger"] == "api"


def test_the_orchestration_route_reports_the_runtime_status_to_read_keys(stack: AzureStack, db: Database) -> None:
    run_id = scheduled_run(stack, db)
    reader = {"X-API-Key": create_key(db, "reader", "read")}

    running = stack.http("GET", f"/api/v2/runs/{run_id}/orchestration", headers=reader)
    Conveyor(stack).run_until(lambda: run_status(db, run_id) == "completed")
    done = stack.http("GET", f"/api/v2/runs/{run_id}/orchestration", headers=reader)
    missing = stack.http("GET", "/api/v2/runs/00000000-0000-4000-8000-000000000000/orchestration", headers=reader)

    assert (running.status_code, json.loads(running.get_body())) == (
        200, {"run_id": run_id, "runtime_status": "Running"})
    assert json.loads(done.get_body())["runtime_status"] == "Completed"
    assert missing.status_code == 404
    assert stack.http("GET", f"/api/v2/runs/{run_id}/orchestration").status_code == 401


def test_a_completed_run_publishes_its_watermark_to_blob_storage(stack: AzureStack, db: Database) -> None:
    run_id = completed(stack, db)

    updated_to = one_row(db, "SELECT updated_to FROM run_metadata WHERE run_id = %s", run_id)["updated_to"]
    assert stack.watermarks.get("nivoda") == updated_to
    assert stack.clock.now() - updated_to < timedelta(hours=1)


def test_where_runs_are_not_orchestrated_the_route_finds_no_orchestration(
    stack: AzureStack, db: Database
) -> None:
    # The one-machine API: its control is a plain RunControl, which reads no orchestration statuses.
    deps = stack.runtime.deps
    app = create_app(db=db, settings=deps.settings, feed=None, control=RunControl(deps, RecordingCoordinator()))
    reader = {"X-API-Key": create_key(db, "reader", "read")}

    with TestClient(app) as client:
        response = client.get("/api/v2/runs/00000000-0000-4000-8000-000000000000/orchestration", headers=reader)

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "runs are not orchestrated in this deployment"
