-- Runs and their partitions: the state the scheduler, the workers, the coordinator and housekeeping share.
-- Times that decide something (heartbeats, staleness) come from the caller's clock, so tests can step it.

-- name: insert_run
INSERT INTO run_metadata (run_id, feed, run_type, status, trigger, updated_from, updated_to, deadline_at,
                          planner, heartbeat_at, started_at)
VALUES (%(run_id)s, %(feed)s, %(run_type)s, 'planning', %(trigger)s, %(updated_from)s, %(updated_to)s,
        %(deadline_at)s, %(planner)s, %(now)s, %(now)s)

-- name: claim_planning
-- A planner owns a planning run while its heartbeat is fresh; a stale one (its planner died) can be taken over.
UPDATE run_metadata SET planner = %(planner)s, heartbeat_at = %(now)s
WHERE run_id = %(run_id)s AND status = 'planning'
  AND (planner IS NULL OR planner = %(planner)s OR coalesce(heartbeat_at, started_at) < %(stale_before)s)
RETURNING *

-- name: planning_heartbeat
UPDATE run_metadata SET heartbeat_at = %(now)s
WHERE run_id = %(run_id)s AND status = 'planning' AND planner = %(planner)s

-- name: store_plan
UPDATE run_metadata SET plan = %(plan)s, partitions_total = %(partitions_total)s, status = 'running'
WHERE run_id = %(run_id)s AND status = 'planning' AND planner = %(planner)s

-- name: insert_partition
INSERT INTO partition_progress (run_id, partition, ppc_from, ppc_to, estimated)
VALUES (%(run_id)s, %(partition)s, %(ppc_from)s, %(ppc_to)s, %(estimated)s)

-- name: abandoned_planning
SELECT run_id FROM run_metadata
WHERE status = 'planning' AND coalesce(heartbeat_at, started_at) < %(stale_before)s

-- name: get_run
SELECT * FROM run_metadata WHERE run_id = %(run_id)s

-- name: lock_run
SELECT * FROM run_metadata WHERE run_id = %(run_id)s FOR UPDATE

-- name: active_run_of_feed
SELECT * FROM run_metadata WHERE feed = %(feed)s AND status IN ('planning', 'running', 'consolidating')

-- name: get_partition
SELECT p.*, r.status AS run_status, r.run_type, r.updated_from, r.updated_to, r.feed
FROM partition_progress p JOIN run_metadata r USING (run_id)
WHERE p.run_id = %(run_id)s AND p.partition = %(partition)s

-- name: partitions_of_run
SELECT * FROM partition_progress WHERE run_id = %(run_id)s ORDER BY partition

-- name: partition_states
SELECT status, count(*) AS n FROM partition_progress WHERE run_id = %(run_id)s GROUP BY status

-- name: advance_partition
-- Guarded by the offset this page started at: a second worker holding the same page changes nothing.
UPDATE partition_progress
SET next_offset = %(next_offset)s, pages = pages + 1, rows_fetched = rows_fetched + %(fetched)s,
    rows_written = rows_written + %(written)s, status = 'running', attempts = 0, last_error = NULL,
    started_at = coalesce(started_at, now()), updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND next_offset = %(offset)s
  AND status IN ('pending', 'running')

-- name: record_attempt
-- One failed try of the page at `offset`; a try of a page already passed (another delivery won) counts nothing.
UPDATE partition_progress
SET attempts = attempts + 1, last_error = %(error)s, status = 'running', updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND next_offset = %(offset)s
  AND status IN ('pending', 'running')
RETURNING attempts

-- name: finish_partition
UPDATE partition_progress
SET status = %(status)s, error = %(error)s, finished_at = now(), updated_at = now()
WHERE run_id = %(run_id)s AND partition = %(partition)s AND status IN ('pending', 'running')
  AND (%(offset)s::int IS NULL OR next_offset = %(offset)s)

-- name: resume_unfinished_partitions
-- Failed partitions, and those cut short when the run failed (their messages were dropped), resume where
-- they stopped, with their attempts counted afresh.
UPDATE partition_progress
SET status = 'running', error = NULL, finished_at = NULL, attempts = 0, updated_at = now()
WHERE run_id = %(run_id)s AND status <> 'succeeded'
RETURNING partition, next_offset

-- name: stalled_partitions
-- Unfinished partitions of running runs that nobody advanced for a while: their message was lost or dead-lettered.
SELECT p.run_id, p.partition, p.next_offset, p.updated_at
FROM partition_progress p JOIN run_metadata r USING (run_id)
WHERE r.status = 'running' AND p.status IN ('pending', 'running') AND p.updated_at < %(stale_before)s

-- name: touch_partition
UPDATE partition_progress SET updated_at = %(now)s
WHERE run_id = %(run_id)s AND partition = %(partition)s AND status IN ('pending', 'running')

-- name: unsettled_runs
-- Running runs whose partitions have all ended: a lost announcement must not leave them running.
SELECT r.run_id FROM run_metadata r
WHERE r.status = 'running' AND r.partitions_total > 0
  AND NOT EXISTS (SELECT 1 FROM partition_progress p
                  WHERE p.run_id = r.run_id AND p.status IN ('pending', 'running'))

-- name: set_run_status
UPDATE run_metadata SET status = %(status)s, failure_reason = %(reason)s,
    finished_at = CASE WHEN %(status)s IN ('completed', 'failed') THEN now() ELSE finished_at END
WHERE run_id = %(run_id)s

-- name: mark_consolidating
-- A retried run that had consolidated before is marked again: the time is of its latest consolidation.
UPDATE run_metadata SET status = 'consolidating', consolidation_enqueued_at = now(),
    consolidation_active_at = %(now)s
WHERE run_id = %(run_id)s AND status = 'running'

-- name: consolidation_active
UPDATE run_metadata SET consolidation_active_at = %(now)s WHERE run_id = %(run_id)s

-- name: stalled_consolidations
SELECT run_id FROM run_metadata
WHERE status = 'consolidating' AND coalesce(consolidation_active_at, consolidation_enqueued_at) < %(stale_before)s

-- name: count_checked_candidates
UPDATE run_metadata SET candidates_checked = candidates_checked + %(checked)s WHERE run_id = %(run_id)s

-- name: complete_run
UPDATE run_metadata SET status = 'completed', watermark = %(watermark)s, deleted = deleted + %(deleted)s,
    unconfirmed = %(unconfirmed)s, finished_at = now()
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

-- name: committed_watermarks
-- The truth: the latest watermark each feed's completed runs committed. Published stores may only lag it.
SELECT feed, max(watermark) AS value FROM run_metadata
WHERE status = 'completed' AND watermark IS NOT NULL
GROUP BY feed

-- name: committed_watermark
SELECT max(watermark) AS value FROM run_metadata
WHERE feed = %(feed)s AND status = 'completed' AND watermark IS NOT NULL

-- name: reopen_run
-- A failed run resumes running; one that never stored a plan goes back to planning, to be planned again.
UPDATE run_metadata
SET status = CASE WHEN plan IS NULL THEN 'planning' ELSE 'running' END, failure_reason = NULL, finished_at = NULL,
    deadline_at = %(deadline_at)s, planner = NULL, heartbeat_at = %(now)s
WHERE run_id = %(run_id)s AND status = 'failed'
RETURNING status

-- name: delete_run
DELETE FROM run_metadata WHERE run_id = %(run_id)s AND status = 'failed'

-- name: last_completed_full_run
SELECT max(finished_at) AS finished_at FROM run_metadata
WHERE feed = %(feed)s AND run_type = 'full' AND status = 'completed'
