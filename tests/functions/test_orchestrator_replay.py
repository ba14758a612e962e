"""The run orchestrator through the real Durable replay engine (azure-functions-durable), no host.

Each test builds the history the Durable extension would send, calls the orchestrator the way the worker does, and
reads the answer (`isDone`, `actions`, `output`). The engine replays the whole history on every call, so these
tests also catch replay behaviour a mocked context cannot show (buffered events, duplicates, late timers).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from durable_history import ActionType, DurableHistory, flat_actions

from opus.azure.orchestration import (
    DEADLINE_REASON,
    FAIL_ACTIVITY,
    MAX_DEADLINE_MINUTES,
    ORCHESTRATOR_NAME,
    SETTLE_ACTIVITY,
    InvalidOrchestrationInput,
    OrchestrationInput,
    OrchestrationSummary,
    Outcome,
    partition_event,
    run_orchestrator,
)
from opus.domain.models import Partition, RunPlan, RunType

pytestmark = [
    # A second event of a name whose wait is already done makes the SDK warn and park it; that is the case we test.
    pytest.mark.filterwarnings("ignore:Potential duplicate Task completion:UserWarning"),
    # The SDK's notice about decoding custom objects without a declared type; our payloads are plain JSON.
    pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type:DeprecationWarning"),
]

RUN_ID = "0b6f3c6e-2d7e-4a55-9a8e-1f0c5d1e9a01"
START = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
DEADLINE = START + timedelta(hours=6)
# Sequence numbers the orchestrator gives its tasks, in the order it creates them (event waits are keyed by name).
TIMER_ID = 0
ACTIVITY_ID = 1


def _registered_handle() -> Any:
    """The orchestrator as `function_app.py` registers it: on a DFApp, under its own name."""
    app = df.DFApp()
    app.orchestration_trigger(context_name="context")(run_orchestrator)
    (function,) = app.get_functions()
    assert function.get_function_name() == ORCHESTRATOR_NAME
    return function.get_user_function()


HANDLE = _registered_handle()


def started(partitions: list[int], *, deadline: datetime = DEADLINE) -> DurableHistory:
    """A history whose first episode is open: the instance has just started."""
    history = DurableHistory(
        name=ORCHESTRATOR_NAME, instance_id=RUN_ID, start=START,
        input_={"run_id": RUN_ID, "partitions": partitions, "deadline": deadline.isoformat()},
    )
    return history.begin_episode().execution_started()


def waiting(partitions: list[int], *, deadline: datetime = DEADLINE) -> DurableHistory:
    """A history after the first episode: waiting for the events and the deadline, with a new episode open."""
    history = started(partitions, deadline=deadline)
    assert activities(decide(history)) == []
    return history.timer_created(TIMER_ID, deadline).end_episode().begin_episode()


def decide(history: DurableHistory) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(HANDLE(history.request_body()))
    return state


def activities(state: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (a["functionName"], json.loads(a["input"]))
        for a in flat_actions(state) if a["actionType"] == ActionType.CALL_ACTIVITY
    ]


def timers(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in flat_actions(state) if a["actionType"] == ActionType.CREATE_TIMER]


def awaited_events(state: dict[str, Any]) -> list[str]:
    waits = (a for a in flat_actions(state) if a["actionType"] == ActionType.WAIT_FOR_EXTERNAL_EVENT)
    return [a["externalEventName"] for a in waits]


def report(history: DurableHistory, partitions: list[int], *, ok: bool = True) -> DurableHistory:
    for partition in partitions:
        history.event_raised(partition_event(partition), {"ok": ok})
    return history


def complete_activity(history: DurableHistory, name: str, input_: object, result: object) -> dict[str, Any]:
    """Record the scheduled activity, deliver its result in a new episode, and return the final answer."""
    history.task_scheduled(ACTIVITY_ID, name, input_).end_episode()
    history.begin_episode().task_completed(ACTIVITY_ID, result)
    return decide(history)


SETTLE = (SETTLE_ACTIVITY, {"run_id": RUN_ID})
FAIL = (FAIL_ACTIVITY, {"run_id": RUN_ID, "reason": DEADLINE_REASON})


# --- the first episode ---------------------------------------------------------------------------------------------
def test_a_new_instance_waits_for_one_event_per_partition_and_the_deadline() -> None:
    state = decide(started([0, 1, 2]))

    assert state["isDone"] is False
    assert awaited_events(state) == ["partition_done_0", "partition_done_1", "partition_done_2"]
    (timer,) = timers(state)
    assert datetime.fromisoformat(timer["fireAt"]) == DEADLINE
    assert timer["isCanceled"] is False
    assert activities(state) == []


# --- events win ----------------------------------------------------------------------------------------------------
def test_all_partitions_ok_settles_the_run_and_returns_the_activity_result() -> None:
    history = report(waiting([0, 1, 2]), [0, 1, 2])

    state = decide(history)
    assert state["isDone"] is False
    assert activities(state) == [SETTLE]

    final = complete_activity(history, *SETTLE, result="consolidating")
    assert final["isDone"] is True
    assert final["output"] == {"run_id": RUN_ID, "outcome": "settled", "result": "consolidating"}
    assert activities(final) == [SETTLE]


def test_the_deadline_timer_is_cancelled_once_the_events_win() -> None:
    history = report(waiting([0, 1]), [0, 1])

    (timer,) = timers(decide(history))
    assert timer["isCanceled"] is True
    (timer,) = timers(complete_activity(history, *SETTLE, result="consolidating"))
    assert timer["isCanceled"] is True


def test_a_failed_partition_still_settles_because_the_activity_decides() -> None:
    history = report(waiting([0, 1, 2]), [0, 2])
    report(history, [1], ok=False)

    assert activities(decide(history)) == [SETTLE]
    final = complete_activity(history, *SETTLE, result="failed")
    assert final["output"] == {"run_id": RUN_ID, "outcome": "settled", "result": "failed"}


def test_the_run_waits_until_the_last_partition_reports() -> None:
    history = report(waiting([0, 1, 2]), [0, 1])

    state = decide(history)
    assert state["isDone"] is False
    assert activities(state) == []
    assert timers(state)[0]["isCanceled"] is False


# --- the deadline wins ---------------------------------------------------------------------------------------------
def test_the_deadline_firing_first_fails_the_run_and_never_settles() -> None:
    history = report(waiting([0, 1, 2]), [0])
    history.timer_fired(TIMER_ID, DEADLINE)

    state = decide(history)
    assert activities(state) == [FAIL]
    assert timers(state)[0]["isCanceled"] is False

    final = complete_activity(history, *FAIL, result="failed")
    assert final["isDone"] is True
    assert final["output"] == {"run_id": RUN_ID, "outcome": "deadline", "result": "failed"}
    assert activities(final) == [FAIL]


def test_events_after_the_deadline_change_nothing() -> None:
    history = waiting([0, 1]).timer_fired(TIMER_ID, DEADLINE)
    history.task_scheduled(ACTIVITY_ID, *FAIL).end_episode()
    report(history.begin_episode(), [0, 1])

    state = decide(history)
    assert state["isDone"] is False
    assert activities(state) == [FAIL]


def test_a_late_timer_while_settling_does_not_fail_the_run() -> None:
    history = report(waiting([0, 1]), [0, 1])
    history.task_scheduled(ACTIVITY_ID, *SETTLE).end_episode()
    # The cancelled timer's message was already on its way: it lands before the activity's result.
    history.begin_episode().timer_fired(TIMER_ID, DEADLINE).end_episode()
    history.begin_episode().task_completed(ACTIVITY_ID, "consolidating")

    final = decide(history)
    assert final["output"] == {"run_id": RUN_ID, "outcome": "settled", "result": "consolidating"}
    assert activities(final) == [SETTLE]


# --- at-least-once delivery ----------------------------------------------------------------------------------------
def test_duplicate_events_settle_exactly_once() -> None:
    history = report(waiting([0, 1, 2]), [0, 0, 1])
    history.end_episode().begin_episode()
    # A redelivered message with another payload: the truth is in PostgreSQL, so it must not matter.
    report(history, [1], ok=False)
    report(history, [2, 2, 0])

    assert activities(decide(history)) == [SETTLE]
    # A duplicate arriving while settle_run runs is parked by the SDK, not a second settle.
    history.task_scheduled(ACTIVITY_ID, *SETTLE).end_episode()
    report(history.begin_episode(), [2]).task_completed(ACTIVITY_ID, "consolidating")
    final = decide(history)
    assert final["isDone"] is True
    assert activities(final) == [SETTLE]


def test_duplicates_alone_do_not_stand_in_for_a_missing_partition() -> None:
    history = report(waiting([0, 1, 2]), [0, 0, 2, 2, 0])

    assert activities(decide(history)) == []


def test_out_of_order_events_across_episodes_settle_after_the_last() -> None:
    history = waiting([0, 1, 2, 3])
    for batch in ([3], [1], [2]):
        report(history, batch)
        assert activities(decide(history)) == []
        history.end_episode().begin_episode()
    report(history, [0])

    assert activities(decide(history)) == [SETTLE]


def test_events_raised_before_the_first_episode_are_buffered() -> None:
    # The events were queued before the instance ran: they arrive in its first episode, with ExecutionStarted.
    history = report(started([0, 1, 2]), [2, 0, 1])

    state = decide(history)
    assert activities(state) == [SETTLE]
    assert timers(state)[0]["isCanceled"] is True


def test_same_name_events_buffered_before_the_wait_exists_still_count() -> None:
    # Events ahead of ExecutionStarted reach the SDK before any wait exists, so it parks them by name
    # (the path of the SDK bug, where a later same-name event replaces an earlier one): each name still counts once.
    history = DurableHistory(
        name=ORCHESTRATOR_NAME, instance_id=RUN_ID, start=START,
        input_={"run_id": RUN_ID, "partitions": [0, 1], "deadline": DEADLINE.isoformat()},
    ).begin_episode()
    report(history, [1, 0])
    report(history, [1], ok=False)
    history.execution_started()

    assert activities(decide(history)) == [SETTLE]


def test_ten_partitions_in_random_order_with_duplicates() -> None:
    partitions = list(range(10))
    order = partitions + random.Random(8).sample(partitions, 4)
    random.Random(10).shuffle(order)
    history = waiting(partitions)
    seen: set[int] = set()
    for partition in order:
        report(history, [partition])
        seen.add(partition)
        expected = [SETTLE] if seen == set(partitions) else []
        assert activities(decide(history)) == expected, f"after {sorted(seen)}"
        if expected:
            break
        history.end_episode().begin_episode()

    final = complete_activity(history, *SETTLE, result="consolidating")
    assert final["output"]["outcome"] == "settled"


def test_a_retried_run_waits_only_for_its_resumed_partitions() -> None:
    history = waiting([2, 5])
    assert awaited_events(decide(started([2, 5]))) == ["partition_done_2", "partition_done_5"]

    # A straggler from the run's first attempt names a partition this instance does not wait for.
    report(history, [0, 5])
    assert activities(decide(history)) == []
    report(history, [2])
    assert activities(decide(history)) == [SETTLE]


def test_a_run_with_no_partitions_to_wait_for_settles_at_once() -> None:
    state = decide(started([]))

    assert activities(state) == [SETTLE]


def test_an_input_encoded_twice_on_its_way_in_is_still_read() -> None:
    body = json.loads(started([0]).request_body())
    body["input"] = json.dumps(body["input"])

    state = json.loads(HANDLE(json.dumps(body)))
    assert awaited_events(state) == ["partition_done_0"]


def test_a_malformed_input_fails_the_orchestration_naming_the_field() -> None:
    history = DurableHistory(
        name=ORCHESTRATOR_NAME, instance_id=RUN_ID, start=START,
        input_={"run_id": RUN_ID, "partitions": "0,1", "deadline": DEADLINE.isoformat()},
    ).begin_episode().execution_started()

    with pytest.raises(Exception, match="partitions must be a list of integers"):
        HANDLE(history.request_body())


def test_the_sdk_cannot_cancel_a_deadline_beyond_one_timer() -> None:
    # Why MAX_DEADLINE_MINUTES: past it the SDK chains timers and the cancel misses the pending one (1.7.0).
    # When this starts failing, the SDK cancels long timers too and the limit can go.
    deadline = START + timedelta(minutes=MAX_DEADLINE_MINUTES + 1)
    state = decide(report(started([0], deadline=deadline), [0]))

    assert activities(state) == [SETTLE]
    (timer,) = timers(state)
    assert timer["isCanceled"] is False


def test_a_deadline_at_the_limit_is_one_cancellable_timer() -> None:
    deadline = START + timedelta(minutes=MAX_DEADLINE_MINUTES)
    state = decide(report(started([0], deadline=deadline), [0]))

    (timer,) = timers(state)
    assert datetime.fromisoformat(timer["fireAt"]) == deadline
    assert timer["isCanceled"] is True


# --- the input and summary shapes ----------------------------------------------------------------------------------
def _plan(*indexes: int) -> RunPlan:
    return RunPlan(
        RUN_ID, "nivoda", RunType.FULL, None, START, tuple(Partition(i, i * 100, i * 100 + 100, 10) for i in indexes)
    )


def test_input_from_a_plan_round_trips_through_json() -> None:
    spec = OrchestrationInput.for_plan(_plan(0, 1, 2), DEADLINE)

    body = json.loads(json.dumps(spec.to_json()))
    assert body == {"run_id": RUN_ID, "partitions": [0, 1, 2], "deadline": "2024-05-01T08:00:00+00:00"}
    assert OrchestrationInput.from_json(body) == spec


def test_input_for_a_retry_names_only_the_resumed_partitions() -> None:
    spec = OrchestrationInput.for_plan(_plan(0, 1, 2, 5), DEADLINE, partitions=[2, 5])

    assert spec.partitions == (2, 5)


def test_input_deadline_is_normalised_to_utc() -> None:
    body = {"run_id": RUN_ID, "partitions": [1], "deadline": "2024-05-01T10:00:00+02:00"}

    assert OrchestrationInput.from_json(body).deadline == DEADLINE
    assert OrchestrationInput.from_json({**body, "deadline": "2024-05-01T08:00:00Z"}).deadline == DEADLINE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "input must be a JSON object"),
        ({"partitions": [0], "deadline": "2024-05-01T08:00:00Z"}, "run_id must be a string"),
        ({"run_id": "", "partitions": [0], "deadline": "2024-05-01T08:00:00Z"}, "run_id must be a non-empty"),
        ({"run_id": RUN_ID, "partitions": [0, True], "deadline": "2024-05-01T08:00:00Z"}, "list of integers"),
        ({"run_id": RUN_ID, "partitions": [1, 1], "deadline": "2024-05-01T08:00:00Z"}, "partitions repeat"),
        ({"run_id": RUN_ID, "partitions": [-1], "deadline": "2024-05-01T08:00:00Z"}, "must be >= 0"),
        ({"run_id": RUN_ID, "partitions": [0]}, "deadline must be an ISO-8601 string"),
        ({"run_id": RUN_ID, "partitions": [0], "deadline": "tomorrow"}, "deadline is not ISO-8601"),
        ({"run_id": RUN_ID, "partitions": [0], "deadline": "2024-05-01T08:00:00"}, "must carry a UTC offset"),
    ],
)
def test_a_malformed_input_is_refused_with_the_field_named(body: object, message: str) -> None:
    with pytest.raises(InvalidOrchestrationInput, match=message):
        OrchestrationInput.from_json(body)


def test_summary_round_trips_and_refuses_an_unknown_outcome() -> None:
    summary = OrchestrationSummary(RUN_ID, Outcome.DEADLINE, "failed")

    assert OrchestrationSummary.from_json(summary.to_json()) == summary
    with pytest.raises(ValueError, match="unknown orchestration outcome"):
        OrchestrationSummary.from_json({"run_id": RUN_ID, "outcome": "maybe", "result": None})


def test_event_names_are_one_per_partition() -> None:
    assert partition_event(0) == "partition_done_0"
    assert partition_event(12) == "partition_done_12"
    with pytest.raises(ValueError, match=">= 0"):
        partition_event(-1)
