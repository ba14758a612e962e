"""The Durable orchestrator that counts partition completion for one run (instance id = run id).

It waits for one external event per partition and a deadline timer, whichever comes first, then hands the
decision to an activity. It decides nothing itself: `partition_progress` in PostgreSQL is the truth, so the event
payload is informative only, and a duplicate or late event with another payload changes nothing.

Why one event name per partition: in azure-functions-durable 1.7.0 several buffered events with the same name all
resolve to the last one (azure-functions-durable-python#507), so a shared name would miscount.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from opus.domain.models import RunPlan
from opus.errors import PermanentError

ORCHESTRATOR_NAME = "run_orchestrator"
SETTLE_ACTIVITY = "settle_run"
FAIL_ACTIVITY = "fail_run"
DEADLINE_REASON = "deadline exceeded"
# The Azure Storage backend's longest single timer. Beyond it the SDK (1.7.0) chains shorter timers, and cancelling
# such a chain does not mark the pending timer cancelled in the actions it returns: keep deadlines within it.
MAX_DEADLINE_MINUTES = 6 * 24 * 60
_EVENT_PREFIX = "partition_done_"


def partition_event(partition: int) -> str:
    """The name of the event that announces the end of one partition."""
    if partition < 0:
        raise ValueError(f"partition index must be >= 0, got {partition}")
    return f"{_EVENT_PREFIX}{partition}"


class InvalidOrchestrationInput(PermanentError):
    """The orchestration's input does not have the agreed shape; the message names the field."""


class Outcome(StrEnum):
    SETTLED = "settled"
    DEADLINE = "deadline"


@dataclass(frozen=True, slots=True)
class OrchestrationInput:
    """What the orchestrator waits for: these partitions of this run, until the deadline."""

    run_id: str
    partitions: tuple[int, ...]
    deadline: datetime

    def __post_init__(self) -> None:
        if not self.run_id:
            raise InvalidOrchestrationInput("run_id must be a non-empty string")
        if self.deadline.tzinfo is None:
            raise InvalidOrchestrationInput("deadline must be timezone-aware")
        if any(p < 0 for p in self.partitions):
            raise InvalidOrchestrationInput(f"partitions must be >= 0: {list(self.partitions)}")
        if len(set(self.partitions)) != len(self.partitions):
            raise InvalidOrchestrationInput(f"partitions repeat: {list(self.partitions)}")

    @classmethod
    def for_plan(
        cls, plan: RunPlan, deadline: datetime, *, partitions: Sequence[int] | None = None
    ) -> OrchestrationInput:
        """Wait for every partition of `plan`, or only `partitions` (the resumed ones of a retried run)."""
        indexes = tuple(p.index for p in plan.partitions) if partitions is None else tuple(partitions)
        return cls(plan.run_id, indexes, deadline.astimezone(UTC))

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "partitions": list(self.partitions),
            "deadline": self.deadline.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_json(cls, body: object) -> OrchestrationInput:
        if not isinstance(body, dict):
            raise InvalidOrchestrationInput(f"input must be a JSON object, got {type(body).__name__}")
        run_id, partitions, deadline = body.get("run_id"), body.get("partitions"), body.get("deadline")
        if not isinstance(run_id, str):
            raise InvalidOrchestrationInput(f"run_id must be a string, got {run_id!r}")
        # bool is an int in Python; a `true` partition index is a producer bug, not partition 1.
        if not isinstance(partitions, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in partitions
        ):
            raise InvalidOrchestrationInput(f"partitions must be a list of integers, got {partitions!r}")
        if not isinstance(deadline, str):
            raise InvalidOrchestrationInput(f"deadline must be an ISO-8601 string, got {deadline!r}")
        try:
            when = datetime.fromisoformat(deadline)
        except ValueError:
            raise InvalidOrchestrationInput(f"deadline is not ISO-8601: {deadline!r}") from None
        if when.tzinfo is None:
            raise InvalidOrchestrationInput(f"deadline must carry a UTC offset: {deadline!r}")
        return cls(run_id, tuple(partitions), when.astimezone(UTC))


@dataclass(frozen=True, slots=True)
class OrchestrationSummary:
    """What the orchestration returns: which way it ended and what the deciding activity answered."""

    run_id: str
    outcome: Outcome
    result: object

    def to_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "outcome": self.outcome.value, "result": self.result}

    @classmethod
    def from_json(cls, body: object) -> OrchestrationSummary:
        if not isinstance(body, dict) or not isinstance(body.get("run_id"), str):
            raise ValueError(f"not an orchestration summary: {body!r}")
        try:
            outcome = Outcome(str(body.get("outcome")))
        except ValueError:
            raise ValueError(f"unknown orchestration outcome in {body!r}") from None
        return cls(body["run_id"], outcome, body.get("result"))


class OrchestrationContext(Protocol):
    """The part of `azure.durable_functions.DurableOrchestrationContext` the orchestrator uses.

    The SDK ships no type information, so its tasks are `Any` here.
    """

    def get_input(self) -> Any: ...

    def wait_for_external_event(self, name: str) -> Any: ...

    def create_timer(self, fire_at: datetime) -> Any: ...

    def task_all(self, activities: list[Any]) -> Any: ...

    def task_any(self, activities: list[Any]) -> Any: ...

    def call_activity(self, name: str, input_: Any = None) -> Any: ...


def run_orchestrator(context: OrchestrationContext) -> Generator[Any, Any, dict[str, object]]:
    """Wait for every partition's event or the deadline, then settle or fail the run through an activity.

    Replay-safe: everything it yields depends only on its input and the history (no clock, no I/O). Events raised
    before it waits are buffered by the framework and resolve the waits as they are created; a second event of a
    name resolves nothing (its wait is already done), so duplicates and any order are harmless.
    """
    spec = OrchestrationInput.from_json(_decoded(context.get_input()))
    waits = [context.wait_for_external_event(partition_event(p)) for p in spec.partitions]
    deadline = context.create_timer(spec.deadline)
    winner = yield context.task_any([context.task_all(waits), deadline])
    if winner is deadline:
        result = yield context.call_activity(FAIL_ACTIVITY, {"run_id": spec.run_id, "reason": DEADLINE_REASON})
        return OrchestrationSummary(spec.run_id, Outcome.DEADLINE, result).to_json()
    # A timer left running keeps the instance alive until it fires; cancelling lets it complete now.
    deadline.cancel()
    result = yield context.call_activity(SETTLE_ACTIVITY, {"run_id": spec.run_id})
    return OrchestrationSummary(spec.run_id, Outcome.SETTLED, result).to_json()


def _decoded(raw: object) -> object:
    # `get_input` decodes the JSON once; an input that was encoded twice on its way in arrives as text.
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            raise InvalidOrchestrationInput("input is not JSON") from None
    return raw
