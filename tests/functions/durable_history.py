"""Histories for the Durable replay engine, shaped as the Durable extension sends them to a Python worker.

The extension calls an orchestrator with its whole history and gets back the actions it wants next. A history is
a list of episodes: each starts with OrchestratorStarted, holds the messages that arrived (events, completions)
and the orchestrator's own decisions (TaskScheduled, TimerCreated), and ends with OrchestratorCompleted. The last
episode is the one being decided, so it has no OrchestratorCompleted yet and its events are not yet played.

Event ids follow DTFx: a decision carries the sequence number the orchestrator gave the task (its EventId), a
completion names that number (TaskScheduledId, TimerId), and messages from outside have EventId -1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any

# The payload fields the Durable extension 2.x sends with every orchestration request (Azure Storage backend):
# replay schema V3 offered, and the long-timer limits that come with it.
EXTENSION_FIELDS: dict[str, Any] = {
    "isReplaying": False,
    "parentInstanceId": None,
    "upperSchemaVersion": 1,
    "upperSchemaVersionNew": 2,
    "maximumShortTimerDuration": "6.00:00:00",
    "longRunningTimerIntervalDuration": "3.00:00:00",
}


class EventType(IntEnum):
    """DTFx's history event types (the subset these tests use), as numbered on the wire."""

    EXECUTION_STARTED = 0
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_RAISED = 15


class ActionType(IntEnum):
    """The action types an orchestrator answers with (the subset these tests look at)."""

    CALL_ACTIVITY = 0
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    WHEN_ANY = 11
    WHEN_ALL = 12


def _timestamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DurableHistory:
    """Builds one orchestration's history, episode by episode, on a clock that advances one second per event."""

    def __init__(self, *, name: str, instance_id: str, input_: dict[str, Any], start: datetime) -> None:
        self.instance_id = instance_id
        self.input = input_
        self.now = start
        self.events: list[dict[str, Any]] = []
        self._name = name
        self._open = False

    def _add(self, event_type: EventType, *, event_id: int = -1, **fields: Any) -> None:
        self.now += timedelta(seconds=1)
        self.events.append(
            {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False,
             "Timestamp": _timestamp(self.now), **fields}
        )

    # --- episodes ---------------------------------------------------------------------------------------------
    def begin_episode(self) -> DurableHistory:
        if self._open:
            raise AssertionError("the previous episode was not ended")
        self._open = True
        self._add(EventType.ORCHESTRATOR_STARTED)
        return self

    def end_episode(self) -> DurableHistory:
        if not self._open:
            raise AssertionError("no episode to end")
        self._open = False
        self._add(EventType.ORCHESTRATOR_COMPLETED)
        return self

    # --- messages that arrive ---------------------------------------------------------------------------------
    def execution_started(self) -> DurableHistory:
        self._add(EventType.EXECUTION_STARTED, Name=self._name, Version="", Input=json.dumps(self.input))
        return self

    def event_raised(self, name: str, payload: object) -> DurableHistory:
        self._add(EventType.EVENT_RAISED, Name=name, Input=json.dumps(payload))
        return self

    def timer_fired(self, timer_id: int, fire_at: datetime) -> DurableHistory:
        self._add(EventType.TIMER_FIRED, TimerId=timer_id, FireAt=_timestamp(fire_at))
        return self

    def task_completed(self, scheduled_id: int, result: object) -> DurableHistory:
        self._add(EventType.TASK_COMPLETED, TaskScheduledId=scheduled_id, Result=json.dumps(result))
        return self

    # --- the orchestrator's recorded decisions ------------------------------------------------------------------
    def timer_created(self, event_id: int, fire_at: datetime) -> DurableHistory:
        self._add(EventType.TIMER_CREATED, event_id=event_id, FireAt=_timestamp(fire_at))
        return self

    def task_scheduled(self, event_id: int, name: str, input_: object) -> DurableHistory:
        self._add(EventType.TASK_SCHEDULED, event_id=event_id, Name=name, Version="", Input=json.dumps(input_))
        return self

    # --- the request -------------------------------------------------------------------------------------------
    def request_body(self) -> str:
        """The JSON the extension posts: past episodes marked played, the current one not."""
        last_start = max(
            i for i, e in enumerate(self.events) if e["EventType"] == EventType.ORCHESTRATOR_STARTED
        )
        history = [{**e, "IsPlayed": i < last_start} for i, e in enumerate(self.events)]
        return json.dumps(
            {"history": history, "instanceId": self.instance_id, "input": json.dumps(self.input),
             **EXTENSION_FIELDS}
        )


def flat_actions(state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every atomic action of an orchestrator's answer, compound ones (WhenAll, WhenAny) opened up."""

    def walk(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if action["actionType"] in (ActionType.WHEN_ANY, ActionType.WHEN_ALL):
            for child in action["compoundActions"]:
                yield from walk(child)
        else:
            yield action

    for group in state["actions"]:
        for action in group:
            yield from walk(action)
