"""A stand-in for the Durable extension: instances, events, and the real orchestrator replayed on their histories.

The Functions host cannot run here, so this plays its part at the boundary we do not own. The SDK client is real
(`df.DurableOrchestrationClient`); only its two HTTP request functions are replaced, as the SDK's own tests do. An
orchestration started through it gets a history (`durable_history.DurableHistory`); `pump()` plays the events
raised since, in a new episode, through the registered orchestrator handle (the real replay engine), runs the
activity it schedules with the registered activity function, and plays the result back, until the orchestrator
is done. What it does not model: timers firing (a deadline here is hours away), continue-as-new, sub-orchestrations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
from durable_history import ActionType, DurableHistory, flat_actions

RPC_BASE_URL = "http://127.0.0.1:17071/durabletask/"
FINISHED = ("Completed", "Failed", "Terminated")
# The sequence numbers the orchestrator gives its tasks, in the order it creates them: first the deadline timer,
# then the one activity (event waits are keyed by name, not numbered).
TIMER_ID = 0
ACTIVITY_ID = 1

Orchestrator = Callable[[str], str]
Activity = Callable[[Any], Any]


@dataclass
class Instance:
    name: str
    input: Any
    history: DurableHistory
    status: str = "Running"
    inbox: list[tuple[str, Any]] = field(default_factory=list)  # raised, not yet played to the orchestrator
    raised: list[tuple[str, Any]] = field(default_factory=list)  # every event ever raised
    activities: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, input, result)
    output: Any = None


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    witnessed: object  # what the test's witness said at the moment of the request


class DurableHost:
    def __init__(
        self, orchestrator: Orchestrator, activities: dict[str, Activity], *, now: Callable[[], datetime],
        witness: Callable[[], object] = lambda: None,
    ) -> None:
        self._orchestrator = orchestrator
        self._activities = activities
        self._now = now
        self._witness = witness
        self.instances: dict[str, Instance] = {}
        self.requests: list[Request] = []
        self._failures: list[tuple[int, Any]] = []

    def client(self) -> df.DurableOrchestrationClient:
        """A real SDK client, as the `durable_client_input` binding builds it, talking to this host."""
        binding = {"taskHubName": "OpusHub", "creationUrls": {}, "managementUrls": {}, "rpcBaseUrl": RPC_BASE_URL}
        client = df.DurableOrchestrationClient(json.dumps(binding))
        client._post_async_request = self._post
        client._get_async_request = self._get
        return client

    def fail_next(self, status: int, body: Any) -> None:
        """The next request gets this answer (500: the extension could not reach its storage...)."""
        self._failures.append((status, body))

    # --- the orchestrations ---------------------------------------------------------------------------------------
    def pump(self) -> int:
        """Play every instance's new events to its orchestrator (and run what it schedules); returns how many."""
        played = 0
        for instance in self.instances.values():
            if instance.status == "Running" and instance.inbox:
                played += len(instance.inbox)
                self._play(instance)
        return played

    def _play(self, instance: Instance) -> None:
        history = instance.history.begin_episode()
        for name, data in instance.inbox:
            history.event_raised(name, data)
        instance.inbox.clear()
        state = self._decide(instance)
        scheduled = [a for a in flat_actions(state) if a["actionType"] == ActionType.CALL_ACTIVITY]
        if not scheduled:
            history.end_episode()
            return
        (action,) = scheduled
        name, input_ = action["functionName"], json.loads(action["input"])
        history.task_scheduled(ACTIVITY_ID, name, input_).end_episode()
        # The activity binding hands the function its decoded input, and encodes what it returns.
        result = self._activities[name](input_)
        instance.activities.append((name, input_, result))
        history.begin_episode().task_completed(ACTIVITY_ID, result)
        final = self._decide(instance)
        history.end_episode()
        assert final["isDone"] is True, final
        instance.status, instance.output = "Completed", final["output"]

    def _decide(self, instance: Instance) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self._orchestrator(instance.history.request_body()))
        return state

    def _start(self, name: str, instance_id: str, input_: Any) -> None:
        history = DurableHistory(name=name, instance_id=instance_id, input_=input_, start=self._now())
        instance = Instance(name, input_, history)
        history.begin_episode().execution_started()
        state = self._decide(instance)
        (timer,) = [a for a in flat_actions(state) if a["actionType"] == ActionType.CREATE_TIMER]
        history.timer_created(TIMER_ID, datetime.fromisoformat(timer["fireAt"])).end_episode()
        # Starting an instance id that exists replaces that instance (a retried run reuses its id).
        self.instances[instance_id] = instance

    # --- the extension's HTTP API ---------------------------------------------------------------------------------
    async def _post(self, url: str, data: Any = None, *_trace: Any, **_headers: Any) -> list[Any]:
        path = url.removeprefix(RPC_BASE_URL)
        self.requests.append(Request("POST", path, self._witness()))
        if self._failures:
            return list(self._failures.pop(0))
        parts = urlsplit(path).path.split("/")
        if parts[0] == "orchestrators":
            self._start(parts[1], parts[2], json.loads(data))
            return [202, {"id": parts[2]}]
        if parts[0] == "instances" and parts[2] == "raiseEvent":
            instance = self.instances.get(parts[1])
            if instance is None:
                return [404, None]
            if instance.status in FINISHED:
                return [410, None]
            event = (parts[3], json.loads(data))
            instance.inbox.append(event)
            instance.raised.append(event)
            return [202, None]
        raise AssertionError(f"unexpected request POST {path}")

    async def _get(self, url: str, *_headers: Any, **_kw: Any) -> list[Any]:
        path = url.removeprefix(RPC_BASE_URL)
        self.requests.append(Request("GET", path, self._witness()))
        if self._failures:
            return list(self._failures.pop(0))
        instance_id = urlsplit(path).path.split("/")[1]
        instance = self.instances.get(instance_id)
        if instance is None:
            return [404, ""]
        body = {
            "name": instance.name, "instanceId": instance_id, "runtimeStatus": instance.status,
            "createdTime": "2024-05-01T02:00:00Z", "lastUpdatedTime": "2024-05-01T02:00:01Z",
            "output": instance.output,
        }
        return [200 if instance.status in FINISHED else 202, body]
