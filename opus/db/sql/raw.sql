-- Raw feed rows: written by page workers, claimed and consolidated by consolidators.

-- name: upsert_raw_page
-- A stone whose payload hash is unchanged is not rewritten and not queued again for consolidation.
-- The arrays travel in binary: text array literals cost ~30 ms of client-side quoting per 50-item page.
INSERT INTO raw_diamonds_nivoda AS r (supplier_stone_id, payload, payload_hash, run_id, seen_run_id)
SELECT t.stone_id, t.payload, t.payload_hash, %(run_id)s, %(run_id)s
FROM unnest(%(stone_ids)b::text[], %(payloads)b::jsonb[], %(hashes)b::text[]) AS t(stone_id, payload, payload_hash)
ON CONFLICT (supplier_stone_id) DO UPDATE
SET payload = EXCLUDED.payload, payload_hash = EXCLUDED.payload_hash, run_id = EXCLUDED.run_id,
    seen_run_id = EXCLUDED.seen_run_id, fetched_at = now(), pending = true,
    claimed_by = NULL, claimed_until = NULL, consolidated_at = NULL
WHERE r.payload_hash IS DISTINCT FROM EXCLUDED.payload_hash

-- name: mark_seen
-- A full run must know every stone it saw, changed or not, to find the ones that disappeared; and it
-- reconsolidates every stone, so that a change of mapping or pricing reaches unchanged payloads too (the
-- upsert into diamonds still skips rows whose content did not change).
UPDATE raw_diamonds_nivoda
SET seen_run_id = %(run_id)s, pending = true, claimed_by = NULL, claimed_until = NULL
WHERE supplier_stone_id = ANY(%(stone_ids)s::text[]) AND seen_run_id <> %(run_id)s

-- name: claim_batch
-- Rows whose claim expired (a crashed consolidator) are taken over.
UPDATE raw_diamonds_nivoda r
SET claimed_by = %(claimant)s, claimed_until = now() + make_interval(secs => %(ttl_s)s)
WHERE r.id IN (
    SELECT id FROM raw_diamonds_nivoda
    WHERE pending AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING r.id, r.supplier_stone_id, r.payload, r.run_id

-- name: release_batch
UPDATE raw_diamonds_nivoda
SET pending = false, claimed_by = NULL, claimed_until = NULL, consolidated_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND claimed_by = %(claimant)s

-- name: pending_left
SELECT count(*) AS n FROM raw_diamonds_nivoda WHERE pending

-- name: delete_unseen_raw
DELETE FROM raw_diamonds_nivoda WHERE seen_run_id <> %(run_id)s

-- name: count_unseen
SELECT
    (SELECT count(*) FROM diamonds WHERE feed = %(feed)s AND status = 'active') AS active,
    (SELECT count(*) FROM diamonds d WHERE d.feed = %(feed)s AND d.status = 'active' AND NOT EXISTS (
        SELECT 1 FROM raw_diamonds_nivoda r
        WHERE r.supplier_stone_id = d.supplier_stone_id AND r.seen_run_id = %(run_id)s)) AS unseen

-- name: soft_delete_unseen
UPDATE diamonds d SET status = 'deleted', deleted_at = now(), updated_at = now()
WHERE d.feed = %(feed)s AND d.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM raw_diamonds_nivoda r
    WHERE r.supplier_stone_id = d.supplier_stone_id AND r.seen_run_id = %(run_id)s)

-- name: delete_run_raw
DELETE FROM raw_diamonds_nivoda WHERE run_id = %(run_id)s AND pending

-- name: unseen_active
-- Active stones of the feed that a full run did not see: deletion candidates, confirmed with the feed first.
SELECT d.supplier_stone_id FROM diamonds d
WHERE d.feed = %(feed)s AND d.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM raw_diamonds_nivoda r
    WHERE r.supplier_stone_id = d.supplier_stone_id AND r.seen_run_id = %(run_id)s)
ORDER BY d.supplier_stone_id
LIMIT %(limit)s
