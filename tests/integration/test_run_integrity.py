"""Regression tests for the ways a run lost, stalled or mispriced stones (issue 7, findings 1-5).

Each drives whole runs against the sandbox over HTTP on a real PostgreSQL, through the entry points an operator
uses (`opus run`'s `run_once`, `opus retry`'s `retry_partitions`, the consumers), and checks the catalogue against
the sandbox's own inventory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.models import RunType
from opus.local.run_once import Progress, follow_run, run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.runs import expire_overdue_runs
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.e2e
SIZE = 3_000


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh inventory per test: these tests change it while runs page through it."""
    with run_sandbox(diamonds=SIZE, seed=31) as sb:
        yield sb


def make_runtime(db: Database, url: str, sb: RunningSandbox, **overrides: Any) -> LocalRuntime:
    values: dict[str, Any] = {
        "database_url": url, "nivoda_endpoint": sb.endpoint, "nivoda_rate_limit_per_s": 10_000,
        "min_records_per_worker": 300, "max_workers": 6, "consolidator_batch_size": 500,
    }
    return LocalRuntime(load_settings(**(values | overrides)), db=db)


def catalogue(db: Database) -> dict[str, dict[str, Any]]:
    with db.connection() as conn:
        return {r["supplier_stone_id"]: r for r in conn.execute(
            "SELECT supplier_stone_id, status, feed_price, price FROM diamonds")}


def run_row(db: Database, run_id: str) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute("SELECT * FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return row


def when_paged(fraction: float, action: Callable[[], None]) -> Callable[[Progress], None]:
    """A progress hook that runs `action` once, when the run has fetched `fraction` of the inventory."""
    fired = False

    def hook(p: Progress) -> None:
        nonlocal fired
        if not fired and p.raw_rows >= fraction * SIZE:
            fired = True
            action()

    return hook


def assert_catalogue_matches(db: Database, sb: RunningSandbox) -> None:
    stones = {s.stone_id: s for s in sb.inventory.stones()}
    stored = catalogue(db)
    live_deleted = [s for s in stones if stored.get(s, {}).get("status") != "active"]
    assert live_deleted == [], f"{len(live_deleted)} stones the feed still lists are not active"
    wrong_price = [s for s, stone in stones.items() if stored[s]["feed_price"] != Decimal(stone.price_cents) / 100]
    assert wrong_price == [], f"{len(wrong_price)} stones carry a stale feed price"


# -- 1. a full run must not soft-delete live stones that changed or shifted while it paged ---------------------


def test_a_full_run_deletes_nothing_live_when_many_stones_change_while_it_pages(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox) as rt:
        assert run_once(rt, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
        removed: list[str] = []

        def change() -> None:
            # A busy night: a fifth of the stones repriced (they leave the run's `updated` window, and the
            # stones behind them shift back under the offset paging), a few really delisted.
            sandbox.inventory.reprice(0.2, 1.07, seed=4)
            removed.extend(sandbox.inventory.remove(25, seed=5))

        result = run_once(rt, RunType.FULL, workers=4, poll_s=0.05, on_progress=when_paged(0.3, change))
        assert result["status"] == "completed", result
        live, stored = {s.stone_id for s in sandbox.inventory.stones()}, catalogue(db)
        assert all(stored[s]["status"] == "active" for s in live), "no listed stone was deleted"
        # Stones paged before they were repriced carry the price the run saw: the next incremental run brings them.
        assert run_once(rt, RunType.INCREMENTAL, workers=4, poll_s=0.1)["status"] == "completed"
    assert removed, "the change happened during the run"
    stored = catalogue(db)
    deleted = {s for s, r in stored.items() if r["status"] == "deleted"}
    # Delisted stones the run had paged before they went were seen listed: the next full run deletes those.
    assert deleted, "delisted stones the run did not see are deleted"
    assert deleted <= set(removed), "only delisted stones are deleted"
    assert result["deleted"] == len(deleted)
    assert_catalogue_matches(db, sandbox)


def test_beyond_the_confirmation_limit_unseen_stones_stay_live_and_are_reported(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, delete_confirm_limit=40) as rt:
        assert run_once(rt, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
        result = run_once(rt, RunType.FULL, workers=4, poll_s=0.05,
                          on_progress=when_paged(0.3, lambda: sandbox.inventory.reprice(0.2, 1.07, seed=6)))
    assert result["status"] == "completed", result
    assert result["deleted"] == 0, "nothing was delisted, so nothing may be deleted"
    stored = catalogue(db)
    assert all(r["status"] == "active" for r in stored.values()), "no live stone deleted on inference"
    run = run_row(db, result["run_id"])
    assert run["unconfirmed"] > 0, "the candidates left unchecked are counted"
    with db.connection() as conn:
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM alerts WHERE run_id = %s", (result["run_id"],))]
    assert "deletions_unconfirmed" in kinds, "and reported"


# -- 2. a retry must never complete a run that did not fetch its window ------------------------------------------


def insert_killed_planning_run(db: Database, *, run_type: str, updated_from: datetime | None,
                               started_ago: timedelta, deadline_in: timedelta) -> str:
    """The row a planner killed mid-scan leaves: planning, no plan, no partitions."""
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, trigger, updated_from, updated_to,"
            " deadline_at, started_at) VALUES (%s, 'nivoda', %s, 'planning', 'cli', %s, %s, %s, %s)",
            (run_id, run_type, updated_from, now, now + deadline_in, now - started_ago),
        )
    return run_id


def test_retrying_a_run_killed_while_planning_fetches_its_window(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox) as rt:
        first = run_once(rt, RunType.FULL, workers=4, poll_s=0.1)
        assert first["status"] == "completed"
        changed = sandbox.inventory.reprice(0.07, 1.11, seed=9)
        watermark = datetime.fromisoformat(first["watermark"])
        run_id = insert_killed_planning_run(db, run_type="incremental", updated_from=watermark - timedelta(minutes=15),
                                            started_ago=timedelta(minutes=1), deadline_in=timedelta(seconds=-1))
        assert expire_overdue_runs(rt.deps) == [run_id]
        rt.control.retry_partitions(run_id)
        result = follow_run(rt, run_id, workers=4, poll_s=0.1)
    assert result["status"] == "completed", result
    assert result["partitions"] > 0, "the retried run was planned"
    stones = {s.stone_id: s for s in sandbox.inventory.stones()}
    stored = catalogue(db)
    stale = [s for s in changed if stored[s]["feed_price"] != Decimal(stones[s].price_cents) / 100]
    assert stale == [], f"{len(stale)} of {len(changed)} changes made before the run were never fetched"


# -- 3. a planning run whose planner died must not block the feed ------------------------------------------------


def test_a_run_whose_planner_died_does_not_block_the_next_run(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    insert_killed_planning_run(db, run_type="full", updated_from=None, started_ago=timedelta(minutes=10),
                               deadline_in=timedelta(hours=6))
    with make_runtime(db, database_url, sandbox, planning_timeout_s=60) as rt:
        result = run_once(rt, RunType.FULL, workers=4, poll_s=0.1)
    assert result["status"] == "completed", result
    assert_catalogue_matches(db, sandbox)


# -- 4. a consolidation whose consolidator died holding claims must still finish ---------------------------------


def test_claims_left_by_a_dead_consolidator_do_not_strand_the_run(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox, claim_ttl_seconds=5) as rt:
        rt.start_consumers(workers=4, consolidators=0)
        try:
            run_id = rt.control.start_run("full", trigger="cli")
            deadline = time.monotonic() + 60
            while run_row(db, run_id)["status"] == "running" and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            rt.stop_consumers()
        assert run_row(db, run_id)["status"] == "consolidating"
        with db.transaction() as conn:  # a consolidator claimed a batch, then died; its claims outlive its message
            conn.execute("UPDATE raw_diamonds_nivoda SET claimed_by = 'dead', claimed_until = now() + interval '3 s'"
                         " WHERE id IN (SELECT id FROM raw_diamonds_nivoda WHERE pending ORDER BY id LIMIT 700)")
        result = follow_run(rt, run_id, workers=0, poll_s=0.1)
    assert result["status"] == "completed", result
    with db.connection() as conn:
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
    assert pending == {"n": 0}
    assert_catalogue_matches(db, sandbox)


# -- 5. a price set without the consolidator must not survive full runs -----------------------------------------


def test_a_rule_changed_back_in_sql_is_applied_by_the_next_full_run(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    with make_runtime(db, database_url, sandbox) as rt:
        assert run_once(rt, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
        with db.transaction() as conn:
            # The API's rule change: store the rule and reprice set-based (exactly its `reprice` statement)...
            conn.execute("INSERT INTO pricing_rules (name, priority, shapes, markup_ratio)"
                         " VALUES ('rounds', 5, '{ROUND}', 2.00)")
            repriced = conn.execute(Queries("api_pricing").reprice, {"now": datetime.now(UTC)}).rowcount
        assert repriced > 0
        with db.transaction() as conn:  # ...then set back by hand in SQL, which reprices nothing
            conn.execute("DELETE FROM pricing_rules WHERE priority = 5")
        assert run_once(rt, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
    with db.connection() as conn:
        wrong = conn.execute("SELECT count(*) AS n FROM diamonds WHERE price <> round(feed_price * 1.20, 2)").fetchone()
    assert wrong == {"n": 0}, "every stone is priced by the rules as they are"
