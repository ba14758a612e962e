"""Whole runs against the Nivoda sandbox over HTTP, on a real PostgreSQL, with the local queue and threads."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.domain.models import Diamond, PricingRule, RunType
from opus.domain.pricing import PricingEngine
from opus.local.run_once import follow_run, run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.scheduler import schedule_run
from opus.sandbox.generator import Stone
from opus.sandbox.runner import RunningSandbox, run_sandbox

pytestmark = pytest.mark.e2e
SANDBOX_SIZE = 5_000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=SANDBOX_SIZE, seed=11) as sb:
        yield sb


def settings_for(database_url: str, sb: RunningSandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "nivoda_endpoint": sb.endpoint, "nivoda_username": sb.username,
        "nivoda_password": sb.password, "nivoda_rate_limit_per_s": 10_000, "min_records_per_worker": 400,
        "max_workers": 6, "consolidator_batch_size": 700, "queue_visibility_timeout_s": 30,
    }
    return load_settings(**(values | overrides))


RULES = [
    # (priority, markup, filters): lab-grown rounds, other lab-grown, big naturals, then the seeded catch-all.
    (10, Decimal("1.45"), {"lab_grown": True, "shapes": ["ROUND"]}),
    (20, Decimal("1.60"), {"lab_grown": True}),
    (30, Decimal("1.10"), {"lab_grown": False, "carat_min": Decimal("2.00")}),
]


def insert_rules(db: Database) -> None:
    with db.transaction() as conn:
        for priority, markup, f in RULES:
            conn.execute(
                "INSERT INTO pricing_rules (priority, markup_ratio, lab_grown, shapes, carat_min)"
                " VALUES (%s, %s, %s, %s, %s)",
                (priority, markup, f.get("lab_grown"), f.get("shapes"), f.get("carat_min")),
            )


def expected_prices(db: Database, stones: list[Stone]) -> dict[str, Decimal]:
    """Prices computed from the sandbox's own records and the rules table, independently of mapping."""
    with db.connection() as conn:
        rows = conn.execute("SELECT id, priority, markup_ratio, lab_grown, shapes, carat_min FROM pricing_rules")
        rules = [
            PricingRule(id=r["id"], priority=r["priority"], markup_ratio=r["markup_ratio"], lab_grown=r["lab_grown"],
                        shapes=frozenset(r["shapes"]) if r["shapes"] else None, carat_min=r["carat_min"])
            for r in rows
        ]
    engine = PricingEngine(rules)
    prices = {}
    for s in stones:
        d = Diamond(feed="nivoda", supplier_stone_id=s.stone_id, offer_id=s.offer_id, shape=s.shape,
                    carats=Decimal(s.ct100) / 100, lab_grown=s.labgrown, feed_price=Decimal(s.price_cents) / 100)
        priced = engine.price(d)
        assert priced is not None
        prices[s.stone_id] = priced.price
    return prices


def active_diamonds(db: Database) -> dict[str, dict[str, Any]]:
    with db.connection() as conn:
        rows = conn.execute("SELECT supplier_stone_id, price, feed_price, status FROM diamonds").fetchall()
    return {r["supplier_stone_id"]: r for r in rows}


def watermark(db: Database) -> Any:
    with db.connection() as conn:
        row = conn.execute("SELECT value FROM watermarks WHERE feed = 'nivoda'").fetchone()
    return row["value"] if row else None


def test_full_then_incremental_then_full_run(db: Database, database_url: str, sandbox: RunningSandbox) -> None:
    insert_rules(db)
    settings = settings_for(database_url, sandbox)
    with LocalRuntime(settings, db=db) as runtime:
        first = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)
    assert first["status"] == "completed", first
    assert first["consolidated"] == SANDBOX_SIZE
    assert first["errors"] == 0
    assert first["partitions"] > 1
    stones = sandbox.inventory.stones()
    stored = active_diamonds(db)
    assert set(stored) == {s.stone_id for s in stones}, "every sandbox stone exactly once"
    expected = expected_prices(db, stones)
    wrong = {k: (stored[k]["price"], v) for k, v in expected.items() if stored[k]["price"] != v}
    assert not wrong, f"{len(wrong)} prices differ, e.g. {list(wrong.items())[:3]}"
    first_watermark = watermark(db)
    assert first_watermark is not None

    repriced = sandbox.inventory.reprice(0.10, 1.07, seed=3)
    added = [s.stone_id for s in sandbox.inventory.add(100)]
    removed = sandbox.inventory.remove(50, seed=4)
    with LocalRuntime(settings, db=db) as runtime:
        incremental = run_once(runtime, RunType.INCREMENTAL, workers=4, poll_s=0.1)
    assert incremental["status"] == "completed", incremental
    assert incremental["type"] == "incremental"
    assert incremental["deleted"] == 0, "an incremental run cannot see removals"
    # The changed stones still listed (and only those: nothing else changed) were consolidated again.
    changed = (set(repriced) - set(removed)) | set(added)
    assert incremental["consolidated"] == len(changed)
    stored = active_diamonds(db)
    stones = sandbox.inventory.stones()
    expected = expected_prices(db, stones)
    assert all(stored[s]["status"] == "active" for s in added)
    assert all(stored[s]["price"] == expected[s] for s in repriced if s not in removed)
    assert all(stored[s]["status"] == "active" for s in removed), "not yet deleted"
    assert watermark(db) > first_watermark

    with LocalRuntime(settings, db=db) as runtime:
        full = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)
    assert full["status"] == "completed", full
    assert full["deleted"] == len(removed)
    assert full["consolidated"] == len(stones), "a full run reconsolidates every stone it saw"
    stored = active_diamonds(db)
    assert {s for s, r in stored.items() if r["status"] == "deleted"} == set(removed)
    active = {s for s, r in stored.items() if r["status"] == "active"}
    assert active == {s.stone_id for s in stones}
    assert all(stored[s.stone_id]["price"] == expected[s.stone_id] for s in stones)


def test_a_failed_run_leaves_the_watermark_where_it_was(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    settings = settings_for(database_url, sandbox, page_attempts=1)
    with LocalRuntime(settings, db=db) as runtime:
        assert run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
        before = watermark(db)
        sandbox.inventory.reprice(0.05, 1.2, seed=9)
        plan = schedule_run(runtime.deps, runtime.coordinator, RunType.INCREMENTAL)
        # The feed breaks after planning: every page fails, so every partition fails.
        sandbox.inventory.faults.configure(rate_500=1.0)
        try:
            failed = follow_run(runtime, plan.run_id, workers=2, poll_s=0.1)
        finally:
            sandbox.inventory.faults.configure()
    assert failed["status"] == "failed", failed
    assert watermark(db) == before
    with db.connection() as conn:
        states = {r["status"] for r in conn.execute(
            "SELECT status FROM partition_progress WHERE run_id = %s", (failed["run_id"],))}
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
    assert states == {"failed"}
    assert pending == {"n": 0}, "nothing of the failed run was consolidated"
    with db.connection() as conn:
        alerts = conn.execute("SELECT kind, run_id FROM alerts").fetchall()
    assert any(a["kind"] == "run_failed" and str(a["run_id"]) == failed["run_id"] for a in alerts)
