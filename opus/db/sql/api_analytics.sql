-- Read-only figures for the dashboard and operators.

-- name: counts_by_status
SELECT status AS key, count(*) AS n FROM diamonds GROUP BY status ORDER BY status

-- name: counts_by_availability
SELECT availability AS key, count(*) AS n FROM diamonds WHERE status = 'active'
GROUP BY availability ORDER BY availability

-- name: counts_by_lab_grown
SELECT lab_grown::text AS key, count(*) AS n FROM diamonds WHERE status = 'active'
GROUP BY lab_grown ORDER BY lab_grown

-- name: price_stats
SELECT count(price) AS priced, count(*) - count(price) AS unpriced,
       min(price) AS min, max(price) AS max, round(avg(price), 2) AS avg,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY price)::numeric, 2) AS median,
       coalesce(sum(price), 0) AS total_value
FROM diamonds WHERE status = 'active'

-- name: stale_records
-- Active stones whose latest record was malformed (consolidate.sql mark_record_errors); the index covers it.
SELECT count(*) AS n FROM diamonds WHERE record_error IS NOT NULL AND status = 'active'

-- name: last_run
SELECT * FROM run_metadata ORDER BY started_at DESC, run_id LIMIT 1

-- name: runs
SELECT * FROM run_metadata
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY started_at DESC, run_id
LIMIT %(limit)s OFFSET %(offset)s

-- name: run
SELECT * FROM run_metadata WHERE run_id = %(run_id)s

-- name: run_partitions
SELECT partition, ppc_from, ppc_to, estimated, next_offset, pages, rows_fetched, rows_written, status, error,
       attempts, last_error, started_at, finished_at, updated_at
FROM partition_progress WHERE run_id = %(run_id)s ORDER BY partition

-- name: suppliers
SELECT coalesce(supplier_name, '') AS supplier_name, count(*) AS stones,
       coalesce(sum(price), 0) AS total_value, coalesce(sum(feed_price), 0) AS total_feed_value,
       round(avg(price), 2) AS avg_price
FROM diamonds WHERE status = 'active'
GROUP BY coalesce(supplier_name, '')
ORDER BY total_value DESC, supplier_name
LIMIT %(limit)s

-- name: errors
SELECT id, run_id, feed, source, supplier_stone_id, field, message, created_at FROM error_logs
WHERE (%(run_id)s::uuid IS NULL OR run_id = %(run_id)s::uuid)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s

-- name: alerts
SELECT id, kind, severity, message, run_id, details, created_at, delivered_at, acknowledged_at FROM alerts
WHERE (%(severity)s::text IS NULL OR severity = %(severity)s::text)
  AND (%(run_id)s::uuid IS NULL OR run_id = %(run_id)s::uuid)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s
