"""The in-process nightly schedule: when it fires, and which kind of run it starts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.local.run_once import follow_run
from opus.local.runtime import LocalRuntime
from opus.local.schedule import NightlySchedule, next_fire
from opus.pipeline.scheduler import scheduled_run_type
from opus.sandbox.runner import RunningSandbox, run_sandbox


class SteppedClock:
    def __init__(self, start: datetime) -> None:
        self._delta = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._delta

    def advance(self, by: timedelta) -> None:
        self._delta += by


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=300, seed=3) as sb:
        yield sb


def runtime(db: Database, url: str, sb: RunningSandbox, clock: Any, **overrides: Any) -> LocalRuntime:
    settings = load_settings(database_url=url, nivoda_endpoint=sb.endpoint, nivoda_rate_limit_per_s=10_000,
                             min_records_per_worker=100, max_workers=2, **overrides)
    return LocalRuntime(settings, db=db, clock=clock)


def test_next_fire_follows_the_cron_expression_in_utc() -> None:
    after = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", after) == datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert next_fire("*/15 * * * *", after) == datetime(2026, 11, 28, 22, 15, tzinfo=UTC)


def test_the_scheduled_run_is_full_until_a_recent_full_run_completed(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    clock = SteppedClock(datetime.now(UTC))
    with runtime(db, database_url, sandbox, clock, full_run_every_days=7) as rt:
        assert scheduled_run_type(rt.deps) is RunType.FULL
        schedule = NightlySchedule(rt.deps, rt.coordinator, "0 2 * * *")
        [run_id] = schedule.fire()
        assert schedule.fire() == [], "a second firing while the run is active is skipped"
        assert follow_run(rt, run_id, workers=2, poll_s=0.1)["status"] == "completed"
        assert scheduled_run_type(rt.deps) is RunType.INCREMENTAL
        clock.advance(timedelta(days=7, minutes=1))
        assert scheduled_run_type(rt.deps) is RunType.FULL


def test_the_schedule_thread_fires_at_the_cron_time(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    # Two seconds before a minute boundary: an every-minute schedule must fire within a few seconds.
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=5) - timedelta(seconds=2)
    clock = SteppedClock(start)
    with runtime(db, database_url, sandbox, clock) as rt:
        schedule = NightlySchedule(rt.deps, rt.coordinator, "* * * * *")
        schedule.start()
        try:
            deadline = time.monotonic() + 10
            runs: list[dict[str, Any]] = []
            while not runs and time.monotonic() < deadline:
                time.sleep(0.2)
                with db.connection() as conn:
                    runs = conn.execute("SELECT run_id, trigger, run_type FROM run_metadata").fetchall()
        finally:
            schedule.stop()
    assert [(r["trigger"], r["run_type"]) for r in runs] == [("schedule", "full")]


FEEDS = """
[feeds.natural]
query = { labgrown = false }

[feeds.lab]
query = { labgrown = true }

[feeds.retired]
enabled = false
query = { shapes = ["PEAR"] }
"""


def test_the_schedule_plans_every_enabled_feed_and_skips_only_the_one_still_active(
    db: Database, database_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS, encoding="utf-8")
    with runtime(db, database_url, sandbox, SteppedClock(datetime.now(UTC)), feeds_file=feeds_file) as rt:
        schedule = NightlySchedule(rt.deps, rt.coordinator, "0 2 * * *")
        first = schedule.fire()
        assert sorted(feed_of(db, r) for r in first) == ["lab", "natural"], "every enabled feed, nothing else"
        assert schedule.fire() == [], "both feeds' runs are active"
        natural = next(r for r in first if feed_of(db, r) == "natural")
        rt.control.cancel_run(natural, by="test")
        [again] = schedule.fire()  # the lab-grown run is still active: only the natural feed is planned
        assert feed_of(db, again) == "natural"


def feed_of(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT feed FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["feed"])
