-- A run's feed query: the feed's DiamondQuery filters as they were when the run was created. Workers and the
-- deletion lookups read them from the run, never from the settings, so a config change cannot alter a running run.

-- name: store_feed_query
UPDATE run_metadata SET plan = coalesce(plan, '{}'::jsonb) || jsonb_build_object('feed_query', %(query)s::jsonb)
WHERE run_id = %(run_id)s

-- name: feed_query_of_run
SELECT plan -> 'feed_query' AS feed_query FROM run_metadata WHERE run_id = %(run_id)s
