"""What a pipeline step needs, wired once per process by the runtime (local threads or Azure triggers)."""

from __future__ import annotations

from dataclasses import dataclass

from opus.config import Settings
from opus.db.pool import Database
from opus.ports import Alerts, Clock, Feed, RunCoordinator, WatermarkStore, WorkQueue


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    db: Database
    feed: Feed
    queue: WorkQueue
    coordinator: RunCoordinator
    watermarks: WatermarkStore
    alerts: Alerts
    clock: Clock
    settings: Settings
