"""What a pipeline step needs, wired once per process by the runtime (local threads or Azure triggers).

The RunCoordinator is not among them: it is built on top of these (the local one settles runs with them), and the
steps that need it (planning, retrying) take it as an argument, so nothing is wired in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opus.config import Settings
from opus.db.pool import Database
from opus.pipeline.preparers import InThreadPreparer, Preparer
from opus.ports import Alerts, Clock, Feed, WatermarkStore, WorkQueue


@dataclass(frozen=True, slots=True)
class PipelineDeps:
    db: Database
    feed: Feed
    queue: WorkQueue
    watermarks: WatermarkStore
    alerts: Alerts
    clock: Clock
    settings: Settings
    # Where consolidation parses, maps and prices claimed rows (owned, and closed, by the runtime).
    preparer: Preparer = field(default_factory=InThreadPreparer)
