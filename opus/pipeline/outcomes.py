"""What a queue handler decided, as a value: the runtime maps it onto its transport.

A handler never settles its own message. It returns an `Outcome` saying what should happen to the message and
which partitions it saw finish; the local consumers and the Service Bus triggers each apply that their own way
(complete, dead-letter, send a scheduled copy) and pass the finished partitions to their RunCoordinator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from opus.ports import JSON


class Disposition(StrEnum):
    DONE = "done"  # complete the message
    RETRY = "retry"  # send `retry` (a copy due after `delay_s`, with its own message id), then complete the original
    GIVE_UP = "give_up"  # the message can never succeed: dead-letter it with `reason`


@dataclass(frozen=True, slots=True)
class PartitionFinished:
    """A partition ended, ok or failed. Announced at least once: the coordinator must tolerate repeats."""

    run_id: str
    partition: int
    ok: bool


@dataclass(frozen=True, slots=True)
class RetryCopy:
    body: JSON
    message_id: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class Outcome:
    disposition: Disposition
    reason: str | None = None
    retry: RetryCopy | None = None
    finished: tuple[PartitionFinished, ...] = ()

    @classmethod
    def done(cls, *finished: PartitionFinished) -> Outcome:
        return cls(Disposition.DONE, finished=finished)

    @classmethod
    def retry_later(cls, body: JSON, message_id: str, delay_s: float, reason: str) -> Outcome:
        return cls(Disposition.RETRY, reason=reason, retry=RetryCopy(body, message_id, max(0.0, delay_s)))

    @classmethod
    def give_up(cls, reason: str) -> Outcome:
        return cls(Disposition.GIVE_UP, reason=reason)


def backoff_s(attempt: int, *, base_s: float = 2.0, cap_s: float = 120.0) -> float:
    """Delay before try `attempt + 1` after `attempt` failures: doubling from `base_s`, at most `cap_s`."""
    return min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
