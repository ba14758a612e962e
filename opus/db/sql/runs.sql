-- Runs and their partitions: the state the scheduler, the workers and the coordinator share.

-- name: insert_run
INSERT INTO run_metadata (run_id, feed, run_type, status, trigger, updated_from, updated_to, deadline_at)
VALUES (%(run_id)s, %(feed)s, %(run_type)s, 'planning', %(trigger)s, %(updated_from)s, %(updated_to)s,
        %(deadline_at)s)

-- name: store_plan
UPDATE run_metadata SET plan = %(plan)s, partitions_total = %(partitions_total)s, status = 'running'
WHERE run_id = %(run_id)s AND status = 'planning'

-- name: insert_partition
INSERT INTO partition_progress (run_id, partition, ppc_from, ppc_to, estimated)
VALUES (%(run_id)s, %(partition)s, %(ppc_from)s, %(ppc_to)s, %(estimated)s)

-- name: get_run
SELECT * FROM run_metadata WHERE run_id = %(run_id)s

-- name: lock_run
SELECT * FROM run_metadata WHERE run_id = %(run_id)s FOR UPDATE

-- name: latest_run
SELECT * FROM run_metadata WHERE feed = %(feed)s ORDER BY started_at DESC LIMIT 1

-- name: get_partition
SELECT p.*, r.status AS run_status, r.run_type, r.updated_from, r.updated_to, r.feed
FROM partition_progress p JOIN run_metadata r USING (run_id)
WHERE p.run_id = %(run_id)s AND p.partition = %(partition)s

-- name: partitions_of_run
SELECT * FROM partition_progress WHERE run_id = %(run_id)s ORDER BY partition

-- name: partition_states
SELECT status, count(*) AS n FROM partition_progress WHERE run_id = %(run_id)s GROUP BY status

-- name: mark_partition_running
UPDATE partition_progress SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND status = 'pending'

-- name: advance_partition
-- Guarded by the offset this page started at: a second worker holding the same page changes nothing.
UPDATE partition_progress
SET next_offset = %(next_offset)s, pages = pages + 1, rows_fetched = rows_fetched + %(fetched)s,
    rows_written = rows_written + %(written)s, status = 'running', updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND next_offset = %(offset)s
  AND status IN ('pending', 'running')

-- name: finish_partition
UPDATE partition_progress
SET status = %(status)s, error = %(error)s, finished_at = now(), updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND status IN ('pending', 'running')
  AND (%(offset)s::int IS NULL OR next_offset = %(offset)s)

-- name: resume_unfinished_partitions
-- Failed partitions, and those cut short when the run failed (their messages were dropped), resume where
-- they stopped.
UPDATE partition_progress SET status = 'running', error = NULL, finished_at = NULL, updated_at = now()
WHERE run_id = %(run_id)s AND status <> 'succeeded'
RETURNING partition, next_offset

-- name: set_run_status
UPDATE run_metadata SET status = %(status)s, failure_reason = %(reason)s,
    finished_at = CASE WHEN %(status)s IN ('completed', 'failed') THEN now() ELSE finished_at END
WHERE run_id = %(run_id)s

-- name: mark_consolidating
UPDATE run_metadata SET status = 'consolidating', consolidation_enqueued_at = now()
WHERE run_id = %(run_id)s AND consolidation_enqueued_at IS NULL

-- name: complete_run
UPDATE run_metadata SET status = 'completed', watermark = %(watermark)s, deleted = deleted + %(deleted)s,
    finished_at = now()
WHERE run_id = %(run_id)s AND status = 'consolidating'

-- name: count_consolidated
UPDATE run_metadata SET consolidated = consolidated + %(consolidated)s, errors = errors + %(errors)s
WHERE run_id = %(run_id)s

-- name: overdue_runs
SELECT run_id FROM run_metadata
WHERE status IN ('planning', 'running', 'consolidating') AND deadline_at < %(now)s

-- name: run_totals
SELECT count(*) FILTER (WHERE status = 'succeeded') AS partitions_done,
       count(*) AS partitions,
       coalesce(sum(pages), 0) AS pages,
       coalesce(sum(rows_fetched), 0) AS rows_fetched,
       coalesce(sum(rows_written), 0) AS rows_written
FROM partition_progress WHERE run_id = %(run_id)s

-- name: insert_error
INSERT INTO error_logs (run_id, feed, source, supplier_stone_id, field, message, payload)
VALUES (%(run_id)s, %(feed)s, %(source)s, %(supplier_stone_id)s, %(field)s, %(message)s, %(payload)s)

-- name: insert_alert
INSERT INTO alerts (kind, severity, message, run_id, details)
VALUES (%(kind)s, %(severity)s, %(message)s, %(run_id)s, %(details)s)
RETURNING id

-- name: mark_alert_delivered
UPDATE alerts SET delivered_at = now() WHERE id = %(id)s

-- name: get_watermark
SELECT value FROM watermarks WHERE feed = %(feed)s

-- name: advance_watermark
INSERT INTO watermarks (feed, value) VALUES (%(feed)s, %(value)s)
ON CONFLICT (feed) DO UPDATE SET value = greatest(watermarks.value, EXCLUDED.value), updated_at = now()

-- name: reopen_run
UPDATE run_metadata SET status = 'running', failure_reason = NULL, finished_at = NULL,
    deadline_at = %(deadline_at)s
WHERE run_id = %(run_id)s AND status = 'failed'

-- name: delete_run
DELETE FROM run_metadata WHERE run_id = %(run_id)s AND status = 'failed'

-- name: last_completed_full_run
SELECT max(finished_at) AS finished_at FROM run_metadata
WHERE feed = %(feed)s AND run_type = 'full' AND status = 'completed'
