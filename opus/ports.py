"""The interfaces the pipeline and the API reach the outside world through.

One adapter module per backend implements each: PostgreSQL on one machine, Service Bus / Durable / Blob on
Azure, the Nivoda client (or the sandbox behind it) for the feed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from opus.domain.models import FeedQuery, HoldResult, RunPlan

JSON = dict[str, Any]

WORK_QUEUE = "work-items"
CONSOLIDATE_QUEUE = "consolidate"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class Feed(Protocol):
    """A source of inventory. Methods raise FeedTransientError or FeedPermanentError, nothing else."""

    name: str

    def count(self, query: FeedQuery) -> int: ...

    def page(self, query: FeedQuery, offset: int, limit: int) -> list[JSON]:
        """Raw items ordered by creation time ascending; an empty list means the range is exhausted."""
        ...

    def get(self, stone_id: str) -> JSON | None: ...

    def hold(self, stone_id: str) -> HoldResult: ...

    def cancel_hold(self, hold_id: str) -> None: ...

    def order(self, offer_id: str, *, reference: str | None = None, comment: str | None = None) -> str:
        """Place an order for one offer and return the feed's order id."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: JSON
    message_id: str | None = None
    delay_s: float = 0.0


class WorkQueue(Protocol):
    """The producer side of a durable queue. Consumers belong to the runtime (threads, or Azure triggers).

    A message id is a duplicate-detection key: a second message with the same id on the same queue is dropped.
    """

    def send(self, queue: str, body: JSON, *, message_id: str | None = None, delay_s: float = 0.0) -> None: ...

    def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> None: ...


class RunCoordinator(Protocol):
    """Counts partition completion for a run and decides when it consolidates or fails.

    The runtime tells it what its handlers announced (at least once each); it must tolerate repeats and
    announcements for runs that ended.
    """

    def start(self, plan: RunPlan) -> None:
        """Called after the plan is stored and before any work of `plan.partitions` is enqueued."""
        ...

    def partition_finished(self, run_id: str, partition: int, ok: bool) -> None: ...


class WatermarkStore(Protocol):
    """The time up to which a feed's inventory has been consolidated."""

    def get(self, feed: str) -> datetime | None: ...

    def advance(self, feed: str, value: datetime) -> None:
        """Set the watermark to `value`; never moves it backwards."""
        ...


class Alerts(Protocol):
    def raise_alert(
        self, kind: str, message: str, *, severity: str = "error", run_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None: ...


class PipelineControl(Protocol):
    """What the API's trigger routes may ask of the pipeline. Each returns quickly; the work is queued."""

    def start_run(self, run_type: str, *, trigger: str, feed: str | None = None) -> str:
        """Plan a run of type 'full' or 'incremental' of a feed (default: the first enabled one), enqueue its
        work, return its run id.

        Raises ConflictError when a run of the feed is already active, NotFoundError for an unknown feed.
        """
        ...

    def consolidate(self, run_id: str, *, force: bool = False) -> None:
        """Queue consolidation of a run whose partitions all succeeded (any run with `force`)."""
        ...

    def retry_partitions(self, run_id: str) -> int:
        """Re-enqueue the failed partitions of a failed run from where they stopped; returns how many."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Delete a failed run and its unconsolidated raw rows; ConflictError for a running or completed run."""
        ...

    def cancel_run(self, run_id: str, *, by: str) -> None:
        """Fail an active run now (freeing its feed); ConflictError for a run that has ended."""
        ...
