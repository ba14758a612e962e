-- Figures for the operators' dashboard that the analytics routes do not give: run history with its page and
-- row totals, inventory per feed, watermarks and what went wrong recently.

-- name: run_history
-- One row per run with its partitions' totals; a lateral sum keeps it one index scan plus one lookup per run.
SELECT r.*,
       extract(epoch FROM coalesce(r.finished_at, %(now)s) - r.started_at)::float8 AS duration_s,
       t.partitions_failed, t.pages, t.rows_fetched, t.rows_written
FROM run_metadata r
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE p.status = 'failed') AS partitions_failed,
           coalesce(sum(p.pages), 0) AS pages,
           coalesce(sum(p.rows_fetched), 0) AS rows_fetched,
           coalesce(sum(p.rows_written), 0) AS rows_written
    FROM partition_progress p WHERE p.run_id = r.run_id
) t
WHERE (%(status)s::text IS NULL OR r.status = %(status)s::text)
  AND (%(feed)s::text IS NULL OR r.feed = %(feed)s::text)
ORDER BY r.started_at DESC, r.run_id
LIMIT %(limit)s OFFSET %(offset)s

-- name: inventory_by_feed
SELECT feed, lab_grown, count(*) AS stones FROM diamonds WHERE status = 'active'
GROUP BY feed, lab_grown ORDER BY feed, lab_grown

-- name: watermarks
SELECT feed, value, updated_at FROM watermarks ORDER BY feed

-- name: recent_trouble
SELECT (SELECT count(*) FROM run_metadata WHERE status = 'failed' AND started_at >= %(since)s) AS failed_runs,
       (SELECT count(*) FROM alerts WHERE created_at >= %(since)s) AS alerts,
       (SELECT count(*) FROM error_logs WHERE created_at >= %(since)s) AS errors

-- name: recent_failed_runs
SELECT run_id, feed, run_type, started_at, failure_reason FROM run_metadata
WHERE status = 'failed' AND started_at >= %(since)s
ORDER BY started_at DESC, run_id LIMIT %(limit)s

-- name: recent_alerts
SELECT id, kind, severity, message, run_id, created_at FROM alerts
WHERE created_at >= %(since)s
ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- name: latest_consolidation_by_feed
-- run_metadata holds one row per run (a few a day), so reading it whole to pick each feed's latest is cheap.
SELECT DISTINCT ON (feed)
       run_id, feed, run_type, status, consolidated, errors, deleted, consolidation_enqueued_at, finished_at
FROM run_metadata WHERE consolidation_enqueued_at IS NOT NULL
ORDER BY feed, consolidation_enqueued_at DESC, run_id

-- name: feed_state
-- Each named feed's latest run and watermark; a feed that never ran gets nulls. The newest runs come first
-- through run_metadata_started, and the feeds' runs interleave, so each lookup stops after a few rows.
SELECT f.name AS feed, r.run_id, r.run_type, r.status, r.started_at, r.finished_at,
       w.value AS watermark, w.updated_at AS watermark_updated_at
FROM unnest(%(feeds)s::text[]) WITH ORDINALITY AS f(name, position)
LEFT JOIN LATERAL (
    SELECT run_id, run_type, status, started_at, finished_at FROM run_metadata
    WHERE feed = f.name ORDER BY started_at DESC, run_id LIMIT 1
) r ON true
LEFT JOIN watermarks w ON w.feed = f.name
ORDER BY f.position

-- name: raw_backlog
-- Only pending rows are read, through their partial index: the table holds every stone the feed lists.
SELECT count(*) AS pending, count(*) FILTER (WHERE claimed_until > %(now)s) AS claimed
FROM raw_diamonds_nivoda WHERE pending
