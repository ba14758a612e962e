"""Consolidation skips a stone only when its diamond was built from the same payload, mapping and rules.

Whole full runs against the sandbox (real PostgreSQL, local queue): an unchanged run rewrites nothing, a row built
by another mapping version is rebuilt, a rule changed in SQL (outside the API) reprices on the next full run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.mapping import MAPPING_VERSION
from opus.domain.models import RunType
from opus.local.run_once import run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.diamond_rows import STAGING_COLUMNS
from opus.pipeline.payload_text import parse_payload
from opus.sandbox.runner import RunningSandbox, run_sandbox

STONES = 600


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=STONES, seed=21) as sb:
        yield sb


@pytest.fixture
def settings(database_url: str, sandbox: RunningSandbox) -> Settings:
    return load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_username=sandbox.username,
        nivoda_password=sandbox.password, nivoda_rate_limit_per_s=10_000, min_records_per_worker=200,
        max_workers=3, consolidator_batch_size=150, consolidator_concurrency=2,
    )


def full_run(db: Database, settings: Settings) -> dict[str, Any]:
    with LocalRuntime(settings, db=db) as runtime:
        summary = run_once(runtime, RunType.FULL, workers=2, poll_s=0.05)
    assert summary["status"] == "completed", summary
    return summary


def tuple_versions(db: Database) -> dict[str, str]:
    """Each diamond's tuple version (xmin): it changes whenever the row is rewritten."""
    with db.connection() as conn:
        return {r["supplier_stone_id"]: r["x"] for r in conn.execute(
            "SELECT supplier_stone_id, xmin::text AS x FROM diamonds")}


def current_rules_version(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT last_value AS version FROM pricing_rules_version").fetchone()
    assert row is not None
    return int(row["version"])


def test_every_diamond_records_what_it_was_built_from(db: Database, settings: Settings) -> None:
    full_run(db, settings)
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT d.payload_hash AS built, r.payload_hash AS raw, d.mapping_version, d.rules_version"
            " FROM diamonds d JOIN raw_diamonds_nivoda r USING (feed, supplier_stone_id)").fetchall()
    assert len(rows) == STONES
    assert all(r["built"] == r["raw"] for r in rows)
    assert {r["mapping_version"] for r in rows} == {MAPPING_VERSION}
    assert {r["rules_version"] for r in rows} == {current_rules_version(db)}


def test_an_unchanged_full_run_rewrites_no_diamond_row(db: Database, settings: Settings) -> None:
    full_run(db, settings)
    before = tuple_versions(db)
    second = full_run(db, settings)
    assert second["consolidated"] == STONES, "every stone seen is accounted for"
    assert tuple_versions(db) == before, "no diamond row was rewritten"
    with db.connection() as conn:
        pending = conn.execute("SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending").fetchone()
    assert pending == {"n": 0}


def test_a_row_built_by_another_mapping_version_is_rebuilt(db: Database, settings: Settings) -> None:
    full_run(db, settings)
    with db.transaction() as conn:  # as if the rows had been built before the mapping changed
        conn.execute("UPDATE diamonds SET mapping_version = %s", (MAPPING_VERSION - 1,))
    before = tuple_versions(db)
    full_run(db, settings)
    after = tuple_versions(db)
    assert all(after[s] != before[s] for s in before), "every stone was reconsolidated"
    with db.connection() as conn:
        versions = {r["mapping_version"] for r in conn.execute("SELECT mapping_version FROM diamonds")}
    assert versions == {MAPPING_VERSION}
    third_before = tuple_versions(db)
    full_run(db, settings)
    assert tuple_versions(db) == third_before, "once rebuilt, a stone is skipped again"


def test_a_rule_changed_in_sql_reprices_on_the_next_full_run(db: Database, settings: Settings) -> None:
    full_run(db, settings)
    version = current_rules_version(db)
    with db.transaction() as conn:  # straight in SQL, as an operator or a migration would: no repricing call
        conn.execute("INSERT INTO pricing_rules (priority, markup_ratio) VALUES (0, 3.0)")
    assert current_rules_version(db) == version + 1
    full_run(db, settings)
    with db.connection() as conn:
        rows = conn.execute("SELECT feed_price, price, markup_ratio, rules_version FROM diamonds").fetchall()
    assert len(rows) == STONES
    assert all(r["markup_ratio"] == Decimal("3.0") for r in rows)
    assert all(r["price"] == (r["feed_price"] * 3).quantize(Decimal("0.01")) for r in rows)
    assert {r["rules_version"] for r in rows} == {version + 1}


def test_each_statement_on_pricing_rules_bumps_the_version_once(db: Database) -> None:
    start = current_rules_version(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO pricing_rules (priority, markup_ratio) VALUES (1, 1.1), (2, 1.2), (3, 1.3)")
    assert current_rules_version(db) == start + 1
    with db.transaction() as conn:
        conn.execute("UPDATE pricing_rules SET markup_ratio = markup_ratio + 0.01 WHERE priority IN (1, 2, 3)")
        conn.execute("DELETE FROM pricing_rules WHERE priority = 3")
    assert current_rules_version(db) == start + 3
    with db.transaction() as conn:
        conn.execute("UPDATE pricing_rules SET rating = 1 WHERE false")
    assert current_rules_version(db) == start + 4, "a statement that matched nothing still counts: cheap, safe"


def test_a_stone_marked_with_a_record_error_is_not_skipped(db: Database, settings: Settings) -> None:
    full_run(db, settings)
    with db.transaction() as conn:
        stone = conn.execute("SELECT supplier_stone_id FROM diamonds ORDER BY supplier_stone_id LIMIT 1").fetchone()
        assert stone is not None
        conn.execute("UPDATE diamonds SET record_error = 'price: missing', record_error_at = now()"
                     " WHERE supplier_stone_id = %s", (stone["supplier_stone_id"],))
    full_run(db, settings)
    with db.connection() as conn:
        marked = conn.execute("SELECT count(*) AS n FROM diamonds WHERE record_error IS NOT NULL").fetchone()
    assert marked == {"n": 0}, "its good record came back, so the mark is cleared"


def test_the_copy_statement_names_the_staging_columns_in_order() -> None:
    copy = Queries("consolidate").copy_staging
    listed = re.search(r"COPY diamonds_staging \((.*?)\) FROM STDIN", copy, re.S)
    assert listed is not None
    assert tuple(c.strip() for c in listed.group(1).split(",")) == STAGING_COLUMNS


@pytest.mark.parametrize("text", [
    '{"diamond": {"id": "a1", "certificate": {"carats": 1.0100, "length": 6.5}}, "price": 150050}',
    '{"big": 123456789012345678901234567890, "cert": "00012345678901234567890"}',
    '{"huge": 1e400, "tiny": -0.0, "unicode": "\\u00e9\\ud83d\\ude00"}',
    '[1, 2.5, null, true, "x"]',
])
def test_payload_text_parses_as_the_jsonb_loader_does(text: str) -> None:
    assert parse_payload(text) == json.loads(text)
    assert repr(parse_payload(text)) == repr(json.loads(text))
