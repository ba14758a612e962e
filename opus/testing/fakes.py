"""In-memory fakes of every port, for tests of the pipeline without a database or a cloud. All thread-safe."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opus.domain.models import RunPlan
from opus.ports import JSON, Clock, OutgoingMessage

SEVERITIES = ("info", "warning", "error", "critical")


class SteppableClock:
    """A clock that moves only when told to: `advance(seconds)`. Starts at a fixed, readable instant."""

    def __init__(self, start: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> None:
        if start.utcoffset() is None:
            raise ValueError("a clock's time must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds` (never back) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    queue: str
    message_id: str
    body: JSON
    visible_at: datetime


class InMemoryWorkQueue:
    """Implements `opus.ports.WorkQueue`: what was sent, per queue, with duplicate ids dropped for good (the
    real queues forget an id after a window of minutes to an hour, longer than any test) and delays measured
    against `clock`. Bodies are copied through JSON, so a body the real queues would refuse is refused here."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SteppableClock()
        self._lock = threading.Lock()
        self._sent: dict[str, list[QueuedMessage]] = {}
        self._waiting: dict[str, list[QueuedMessage]] = {}
        self._seen_ids: dict[str, set[str]] = {}
        self.dropped = 0

    def send(self, queue: str, body: JSON, *, message_id: str | None = None, delay_s: float = 0.0) -> None:
        self.send_batch(queue, [OutgoingMessage(body, message_id, delay_s)])

    def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        now = self.clock.now()
        prepared = [
            QueuedMessage(queue, m.message_id or str(uuid.uuid4()), _json_copy(m.body),
                          now + timedelta(seconds=max(0.0, m.delay_s)))
            for m in messages
        ]
        with self._lock:
            seen = self._seen_ids.setdefault(queue, set())
            for message in prepared:
                if message.message_id in seen:
                    self.dropped += 1
                    continue
                seen.add(message.message_id)
                self._sent.setdefault(queue, []).append(message)
                self._waiting.setdefault(queue, []).append(message)

    def sent(self, queue: str) -> list[QueuedMessage]:
        """Every message accepted on `queue`, in order, whether taken, visible or still delayed."""
        with self._lock:
            return list(self._sent.get(queue, []))

    def ready(self, queue: str) -> list[QueuedMessage]:
        """The messages a consumer could receive now, without taking them."""
        now = self.clock.now()
        with self._lock:
            return [m for m in self._waiting.get(queue, []) if m.visible_at <= now]

    def take(self, queue: str) -> list[QueuedMessage]:
        """Receive and complete every message visible now."""
        now = self.clock.now()
        with self._lock:
            waiting = self._waiting.get(queue, [])
            taken = [m for m in waiting if m.visible_at <= now]
            self._waiting[queue] = [m for m in waiting if m.visible_at > now]
        return taken


class InMemoryWatermarkStore:
    """Implements `opus.ports.WatermarkStore`: one value per feed that only moves forward."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, datetime] = {}

    def get(self, feed: str) -> datetime | None:
        with self._lock:
            return self._values.get(feed)

    def advance(self, feed: str, value: datetime) -> None:
        if value.utcoffset() is None:
            raise ValueError("a watermark must be timezone-aware")
        with self._lock:
            current = self._values.get(feed)
            if current is None or value > current:
                self._values[feed] = value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    kind: str
    message: str
    severity: str
    run_id: str | None
    details: dict[str, Any] | None


class RecordingAlerts:
    """Implements `opus.ports.Alerts`: keeps every alert, in order, in `raised`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._raised: list[RaisedAlert] = []

    def raise_alert(
        self, kind: str, message: str, *, severity: str = "error", run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        # The alerts table refuses any other severity; refusing it here keeps tests honest.
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
        alert = RaisedAlert(kind, message, severity, run_id, _json_copy(dict(details)) if details else None)
        with self._lock:
            self._raised.append(alert)

    @property
    def raised(self) -> list[RaisedAlert]:
        with self._lock:
            return list(self._raised)


@dataclass(frozen=True, slots=True)
class FinishedPartition:
    run_id: str
    partition: int
    ok: bool


@dataclass
class RecordingCoordinator:
    """Implements `opus.ports.RunCoordinator` by recording what it is told; it decides nothing."""

    started: list[RunPlan] = field(default_factory=list)
    finished: list[FinishedPartition] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self, plan: RunPlan) -> None:
        with self._lock:
            self.started.append(plan)

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None:
        with self._lock:
            self.finished.append(FinishedPartition(run_id, partition, ok))


def _json_copy(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"a message body must be a JSON object, not {type(body).__name__}")
    copied: dict[str, Any] = json.loads(json.dumps(body))
    return copied
