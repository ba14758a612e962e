"""Pipeline triggers: start a run, consolidate, retry failed partitions, delete a failed run."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from opus.api.schemas.common import AsText, RequestBody


class RunRequest(RequestBody):
    """Start a run of this type."""

    type: Literal["full", "incremental"] = Field(description="A full run re-reads everything; incremental reads "
                                                 "what changed since the watermark.")
    feed: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")] | None = Field(
        default=None, description="The feed to run (see FEEDS_FILE); default: the first enabled feed.")


class RunRef(RequestBody):
    """Names the run to act on."""

    run_id: Annotated[UUID, AsText] = Field(description="The run.")


class ConsolidateRequest(RunRef):
    """Consolidate a run, optionally even though not all of its partitions succeeded."""

    force: bool = Field(default=False, description="Consolidate even if some partitions did not succeed.")


class RunStarted(BaseModel):
    """The run was planned and its work queued."""

    run_id: str = Field(description="The new run's id.")
    type: Literal["full", "incremental"] = Field(description="Its type.")


class TriggerAccepted(BaseModel):
    """The request was queued."""

    run_id: UUID = Field(description="The run concerned.")
    action: Literal["consolidate", "retry-partitions", "delete-run", "cancel-run"] = Field(description="What was done.")
    partitions: int | None = Field(default=None, description="Partitions re-queued (retry-partitions only).")
