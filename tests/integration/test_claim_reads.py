"""A consolidation claim reads about one batch of raw rows however many the run has already released.

The planner's statistics are taken when a run's rows are all pending, and they stay so while consolidation
releases them in id order. Ordered by `id` alone, the claim could walk the primary key from the first row and
filter out every row already released: each batch read more than the one before, a run's claims cost the square
of its size. The claim is answered from the index of pending rows, whatever the statistics say.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.mapping import MAPPING_VERSION

RAW = Queries("raw")
ROWS = 20_000
BATCH = 500


def _removed_by_filter(plan: dict[str, Any]) -> int:
    """Rows that scans of the raw table read and threw away, over the whole plan."""
    own = plan.get("Rows Removed by Filter", 0) if plan.get("Relation Name") == "raw_diamonds_nivoda" else 0
    return int(own) + sum(_removed_by_filter(child) for child in plan.get("Plans", []))


def test_a_claim_reads_one_batch_after_most_of_the_run_was_released(db: Database) -> None:
    run_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO raw_diamonds_nivoda (feed, supplier_stone_id, payload, payload_hash, run_id, seen_run_id)"
            " SELECT 'nivoda', 's' || g, jsonb_build_object('g', g), md5(g::text), %(run)s, %(run)s"
            " FROM generate_series(1, %(rows)s) g", {"run": run_id, "rows": ROWS})
    with db.autocommit() as conn:
        conn.execute("ANALYZE raw_diamonds_nivoda")  # statistics of a run whose rows are all pending
    with db.transaction() as conn:  # consolidation released the first 90 %, in id order
        conn.execute("UPDATE raw_diamonds_nivoda SET pending = false WHERE id <= %s", (ROWS * 9 // 10,))

    params = {"claimant": "test", "feed": "nivoda", "now": datetime.now(UTC), "ttl_s": 60, "limit": BATCH,
              "mapping_version": MAPPING_VERSION}
    with db.connection() as conn:  # EXPLAIN ANALYZE runs the claim: rolled back
        row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {RAW.claim_built_or_batch}", params).fetchone()
        conn.rollback()
    assert row is not None
    document = row["QUERY PLAN"]
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    assert _removed_by_filter(plan) < BATCH, "the claim walked past rows released before it"
