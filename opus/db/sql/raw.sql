-- Raw feed rows: written by page workers, claimed and consolidated by consolidators. Every statement is scoped by
-- feed: two feeds never share a row, a claim, a pending count or a deletion.

-- name: upsert_raw_page
-- A stone whose payload hash is unchanged is not rewritten and not queued again for consolidation.
-- The arrays travel in binary: text array literals cost ~30 ms of client-side quoting per 50-item page.
INSERT INTO raw_diamonds_nivoda AS r (feed, supplier_stone_id, payload, payload_hash, run_id, seen_run_id)
SELECT %(feed)s, t.stone_id, t.payload, t.payload_hash, %(run_id)s, %(run_id)s
FROM unnest(%(stone_ids)b::text[], %(payloads)b::jsonb[], %(hashes)b::text[]) AS t(stone_id, payload, payload_hash)
ON CONFLICT (feed, supplier_stone_id) DO UPDATE
SET payload = EXCLUDED.payload, payload_hash = EXCLUDED.payload_hash, run_id = EXCLUDED.run_id,
    seen_run_id = EXCLUDED.seen_run_id, fetched_at = now(), pending = true,
    claimed_by = NULL, claimed_until = NULL, consolidated_at = NULL
WHERE r.payload_hash IS DISTINCT FROM EXCLUDED.payload_hash

-- name: mark_seen
-- A full run must know every stone it saw, changed or not, to find the ones that disappeared; and it
-- queues every stone again, so that a change of mapping or pricing reaches unchanged payloads too; the consolidator
-- releases unread the stones whose diamond was built from the same payload, mapping and rules
-- (`claim_built_or_batch`), which is what keeps an unchanged night cheap, and counts them as consolidated.
UPDATE raw_diamonds_nivoda
SET seen_run_id = %(run_id)s, pending = true, claimed_by = NULL, claimed_until = NULL
WHERE feed = %(feed)s AND supplier_stone_id = ANY(%(stone_ids)s::text[]) AND seen_run_id <> %(run_id)s

-- name: mark_seen_unstorable
-- A stone the feed listed with a record jsonb cannot hold is still listed: seen, so that the run does not ask the
-- feed about it again as a deletion candidate. Not queued: its raw row keeps the last record that could be stored.
UPDATE raw_diamonds_nivoda
SET seen_run_id = %(run_id)s
WHERE feed = %(feed)s AND supplier_stone_id = ANY(%(stone_ids)s::text[]) AND seen_run_id <> %(run_id)s

-- name: log_skipped_record
-- A record that could not be stored, logged once per run and stone: the same stone may come twice (two pages
-- after an offset shift, a page and a deletion lookup). A record without a stone id cannot be told apart from
-- another: each is logged. Returns a row when it was logged, which is what the run's `errors` counts.
INSERT INTO error_logs (run_id, feed, source, supplier_stone_id, field, message, payload)
SELECT %(run_id)s, %(feed)s, 'worker', %(supplier_stone_id)s::text, %(field)s, %(message)s, %(payload)s
WHERE %(supplier_stone_id)s::text IS NULL OR NOT EXISTS (
    SELECT 1 FROM error_logs
    WHERE run_id = %(run_id)s AND source = 'worker' AND supplier_stone_id = %(supplier_stone_id)s::text)

-- name: claim_built_or_batch
-- Rows whose claim expired (a crashed consolidator) are taken over. A row whose diamond was built from this very
-- payload by this mapping and these rules is released here, in the same statement, unread: one narrow write
-- instead of a claim, a transfer, a parse, a mapping and a release. Those come back with a NULL payload.
-- Each candidate probes the diamonds key once (LATERAL ... LIMIT 1), and each UPDATE finds its rows by primary key
-- from an array: joined as CTEs, the planner hashed the whole of `diamonds` and of the raw table per batch and
-- anti-joined the batch with itself, which made every batch slower the larger the feed.
-- The payload travels as text: the client parses it once, with a faster parser than the jsonb loader's.
-- Candidates come from the index of pending rows, (feed, id) WHERE pending, whatever the statistics say: they are
-- taken while every row of a run is pending and stay so while it is released in id order, so an `ORDER BY id`
-- with `feed = ...` could walk the primary key from the first row and discard every row released before, each
-- batch reading more than the last. The feed as a range and `ORDER BY feed, id` are an order only that index has.
WITH candidates AS (
    SELECT id, feed, supplier_stone_id, payload_hash FROM raw_diamonds_nivoda
    WHERE feed >= %(feed)s AND feed <= %(feed)s AND pending
      AND (claimed_until IS NULL OR claimed_until < %(now)s)
    ORDER BY feed, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), judged AS MATERIALIZED (
    SELECT c.id, b.id IS NOT NULL AS built
    FROM candidates c
    LEFT JOIN LATERAL (
        SELECT d.id FROM diamonds d
        WHERE d.feed = c.feed AND d.supplier_stone_id = c.supplier_stone_id
          AND d.payload_hash = c.payload_hash AND d.mapping_version = %(mapping_version)s
          AND d.rules_version = (SELECT last_value FROM pricing_rules_version)
          AND d.status = 'active' AND d.record_error IS NULL
        LIMIT 1
    ) b ON true
), released AS (
    UPDATE raw_diamonds_nivoda r
    SET pending = false, claimed_by = NULL, claimed_until = NULL, consolidated_at = now()
    WHERE r.id = ANY (ARRAY(SELECT id FROM judged WHERE built))
    RETURNING r.id, r.supplier_stone_id
), claimed AS (
    UPDATE raw_diamonds_nivoda r
    SET claimed_by = %(claimant)s, claimed_until = %(now)s + make_interval(secs => %(ttl_s)s)
    WHERE r.id = ANY (ARRAY(SELECT id FROM judged WHERE NOT built))
    RETURNING r.id, r.supplier_stone_id, r.payload::text AS payload, r.payload_hash, r.run_id
)
SELECT id, supplier_stone_id, payload, payload_hash, run_id FROM claimed
UNION ALL
SELECT id, supplier_stone_id, NULL, NULL, NULL FROM released

-- name: release_batch
UPDATE raw_diamonds_nivoda
SET pending = false, claimed_by = NULL, claimed_until = NULL, consolidated_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND claimed_by = %(claimant)s

-- name: pending_of_feed
-- Rows still to consolidate, and when the earliest claim held by someone else runs out (a dead claimant's rows
-- become claimable then).
SELECT count(*) AS pending,
       min(claimed_until) FILTER (WHERE claimed_until >= %(now)s) AS next_claim_expiry
FROM raw_diamonds_nivoda WHERE feed = %(feed)s AND pending

-- name: delete_run_raw
DELETE FROM raw_diamonds_nivoda WHERE run_id = %(run_id)s AND pending

-- name: analyze_for_deletions
-- The deletion queries below join every active stone with its raw row. Right after a run bulk-loaded both
-- tables, statistics taken when they were small make the planner choose loops that take minutes; fresh ones
-- (a sample, about a second at 1.3 M rows) make it choose hash joins.
ANALYZE raw_diamonds_nivoda, diamonds

-- name: unchecked_candidates
-- Active stones of the feed that a full run did not see and has not yet asked the feed about, after `after` in
-- stone id order: a slice asks about each candidate once, even one the feed lists that could not be marked seen.
SELECT d.supplier_stone_id FROM diamonds d
WHERE d.feed = %(feed)s AND d.status = 'active' AND d.supplier_stone_id > %(after)s
  AND NOT EXISTS (SELECT 1 FROM raw_diamonds_nivoda r
                  WHERE r.feed = d.feed AND r.supplier_stone_id = d.supplier_stone_id AND r.seen_run_id = %(run_id)s)
  AND NOT EXISTS (SELECT 1 FROM deletion_checks c
                  WHERE c.run_id = %(run_id)s AND c.supplier_stone_id = d.supplier_stone_id)
ORDER BY d.supplier_stone_id
LIMIT %(limit)s

-- name: record_confirmed_gone
INSERT INTO deletion_checks (run_id, feed, supplier_stone_id)
SELECT %(run_id)s, %(feed)s, unnest(%(stone_ids)s::text[])
ON CONFLICT DO NOTHING

-- name: deletion_counts
-- Active stones, stones the feed confirmed gone (and not seen since), and candidates never asked about.
SELECT
    (SELECT count(*) FROM diamonds WHERE feed = %(feed)s AND status = 'active') AS active,
    (SELECT count(*) FROM deletion_checks c JOIN diamonds d
         ON d.feed = c.feed AND d.supplier_stone_id = c.supplier_stone_id AND d.status = 'active'
     WHERE c.run_id = %(run_id)s AND NOT EXISTS (
         SELECT 1 FROM raw_diamonds_nivoda r
         WHERE r.feed = c.feed AND r.supplier_stone_id = c.supplier_stone_id AND r.seen_run_id = %(run_id)s)
    ) AS confirmed_gone,
    (SELECT count(*) FROM diamonds d
     WHERE d.feed = %(feed)s AND d.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM raw_diamonds_nivoda r
                       WHERE r.feed = d.feed AND r.supplier_stone_id = d.supplier_stone_id
                         AND r.seen_run_id = %(run_id)s)
       AND NOT EXISTS (SELECT 1 FROM deletion_checks c
                       WHERE c.run_id = %(run_id)s AND c.supplier_stone_id = d.supplier_stone_id)
    ) AS unchecked

-- name: soft_delete_confirmed
UPDATE diamonds d SET status = 'deleted', deleted_at = now(), updated_at = now()
FROM deletion_checks c
WHERE c.run_id = %(run_id)s AND d.feed = c.feed AND d.supplier_stone_id = c.supplier_stone_id
  AND d.status = 'active'
  AND NOT EXISTS (SELECT 1 FROM raw_diamonds_nivoda r
                  WHERE r.feed = c.feed AND r.supplier_stone_id = c.supplier_stone_id AND r.seen_run_id = %(run_id)s)

-- name: delete_confirmed_raw
DELETE FROM raw_diamonds_nivoda r
USING deletion_checks c
WHERE c.run_id = %(run_id)s AND r.feed = c.feed AND r.supplier_stone_id = c.supplier_stone_id
  AND r.seen_run_id <> %(run_id)s
