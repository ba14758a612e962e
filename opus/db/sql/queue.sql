-- The local work queue (opus/adapters/postgres_queue.py): peek-lock semantics like Service Bus.
-- A row is 'ready' while it waits or is locked by a consumer (a lock is `visible_at` in the future plus a
-- `lock_token`); 'completed' and 'dead' rows stay until pruned so that their message ids keep deduplicating.

-- name: enqueue
-- One statement for a whole batch. A message id already present is dropped (duplicate detection), unless the
-- earlier message is finished and was last active before the detection window: then the row is reused.
INSERT INTO queue_messages AS m (queue, message_id, body, visible_at)
SELECT %(queue)s, t.message_id, t.body, now() + make_interval(secs => t.delay_s)
FROM unnest(%(message_ids)s::text[], %(bodies)s::jsonb[], %(delays)s::float8[]) AS t (message_id, body, delay_s)
ON CONFLICT ON CONSTRAINT queue_messages_dedup DO UPDATE
SET body = EXCLUDED.body,
    state = 'ready',
    enqueued_at = now(),
    visible_at = EXCLUDED.visible_at,
    delivery_count = 0,
    lock_token = NULL,
    dead_reason = NULL,
    finished_at = NULL
WHERE m.state <> 'ready'
  AND coalesce(m.finished_at, m.enqueued_at) < now() - make_interval(secs => %(dedup_window_s)s)
RETURNING m.id

-- name: notify
-- Delivered to listeners only when the sending transaction commits, so a woken consumer finds the message.
SELECT pg_notify(%(channel)s, '')

-- name: listen
LISTEN {channel}

-- name: relaxed_commit
-- For receives and settlements only: see PostgresQueue._consumer_transaction for why this is safe.
SET LOCAL synchronous_commit = off

-- name: receive
-- Take the oldest visible messages that no concurrent receiver is taking. A message that has already been
-- delivered max_deliveries times is dead-lettered here instead of being handed out again; the caller sees it
-- with state 'dead' and leaves it out.
WITH picked AS (
    SELECT id
    FROM queue_messages
    WHERE queue = %(queue)s AND state = 'ready' AND visible_at <= now()
    ORDER BY visible_at, id
    LIMIT %(max_messages)s
    FOR UPDATE SKIP LOCKED
),
exhausted AS (
    UPDATE queue_messages AS m
    SET state = 'dead', dead_reason = 'MaxDeliveryCountExceeded', finished_at = now(), lock_token = NULL
    FROM picked
    WHERE m.id = picked.id AND m.delivery_count >= %(max_deliveries)s
    RETURNING m.id, m.queue, m.message_id, m.body, m.delivery_count, m.lock_token, m.enqueued_at, m.state
),
delivered AS (
    UPDATE queue_messages AS m
    SET delivery_count = m.delivery_count + 1,
        lock_token = gen_random_uuid(),
        visible_at = now() + make_interval(secs => %(visibility_timeout_s)s)
    FROM picked
    WHERE m.id = picked.id AND m.delivery_count < %(max_deliveries)s
    RETURNING m.id, m.queue, m.message_id, m.body, m.delivery_count, m.lock_token, m.enqueued_at, m.state
)
SELECT * FROM delivered
UNION ALL
SELECT * FROM exhausted
ORDER BY id

-- name: next_visible_in
-- Seconds until the next ready message becomes visible (a scheduled one, or a lock that expires); NULL if none.
SELECT extract(epoch FROM min(visible_at) - clock_timestamp())::float8 AS seconds
FROM queue_messages
WHERE queue = %(queue)s AND state = 'ready'

-- name: complete
-- Every settlement names the lock token: after a lock expired and another consumer received the message, the
-- old holder's token no longer matches and the statement touches nothing.
UPDATE queue_messages
SET state = 'completed', finished_at = now(), lock_token = NULL
WHERE id = %(id)s AND lock_token = %(lock_token)s AND state = 'ready'
RETURNING id

-- name: abandon
-- The last allowed delivery failed: dead-letter now rather than wait for a receive to notice.
UPDATE queue_messages
SET lock_token = NULL,
    visible_at = now() + make_interval(secs => %(delay_s)s),
    state = CASE WHEN delivery_count >= %(max_deliveries)s THEN 'dead' ELSE 'ready' END,
    dead_reason = CASE WHEN delivery_count >= %(max_deliveries)s THEN 'MaxDeliveryCountExceeded' END,
    finished_at = CASE WHEN delivery_count >= %(max_deliveries)s THEN now() END
WHERE id = %(id)s AND lock_token = %(lock_token)s AND state = 'ready'
RETURNING id, state

-- name: release
-- Hand back a message received but never worked on (its consumer was stopping): the receive is undone, delivery
-- count included, so that consumers stopping together cannot pass one message around until it is dead-lettered.
UPDATE queue_messages
SET lock_token = NULL, visible_at = now(), delivery_count = greatest(delivery_count - 1, 0)
WHERE id = %(id)s AND lock_token = %(lock_token)s AND state = 'ready'
RETURNING id

-- name: dead_letter
UPDATE queue_messages
SET state = 'dead', dead_reason = %(reason)s, finished_at = now(), lock_token = NULL
WHERE id = %(id)s AND lock_token = %(lock_token)s AND state = 'ready'
RETURNING id

-- name: renew_lock
UPDATE queue_messages
SET visible_at = now() + make_interval(secs => %(visibility_timeout_s)s)
WHERE id = %(id)s AND lock_token = %(lock_token)s AND state = 'ready'
RETURNING visible_at

-- name: prune
DELETE FROM queue_messages
WHERE state <> 'ready' AND finished_at < now() - make_interval(secs => %(older_than_s)s)

-- name: counts
SELECT state, count(*)::int AS n
FROM queue_messages
WHERE queue = %(queue)s
GROUP BY state

-- name: dead_letters
SELECT id, message_id, body, delivery_count, dead_reason AS reason, enqueued_at, finished_at
FROM queue_messages
WHERE queue = %(queue)s AND state = 'dead'
ORDER BY finished_at, id
LIMIT %(limit)s
