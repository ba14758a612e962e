-- The one Nivoda rate limit of all of Opus: a row per bucket holding the next free request slot and a pause.
-- Times are the database's (`clock_timestamp()`, evaluated after the row lock is taken, so a reservation that
-- waited for the lock is timed from when it got it), unless the caller passes `now` (a test's stepped clock).
-- Nothing is held by a caller between statements: a process that dies leaves at most the slots it reserved.

-- name: ensure_bucket
INSERT INTO rate_limit_buckets (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING

-- name: reserve_slot
-- One UPDATE takes the next slot; the row lock queues concurrent reservations, so reservation order is service
-- order. An idle bucket starts no earlier than `burst_s` ago (at most that many slots' worth back to back),
-- and never before a pause ends. `wait_s` is how long the caller sleeps before it may send.
UPDATE rate_limit_buckets
SET next_slot_at = greatest(next_slot_at,
                            coalesce(%(now)s::timestamptz, clock_timestamp()) - make_interval(secs => %(burst_s)s),
                            paused_until)
                   + make_interval(secs => %(interval_s)s),
    reservations = reservations + 1
WHERE name = %(name)s
RETURNING extract(epoch FROM next_slot_at - coalesce(%(now)s::timestamptz, clock_timestamp()))::float8
          - %(interval_s)s AS wait_s

-- name: pause_bucket
-- A 429 from Nivoda: no reservation of any process starts before the pause ends; a longer pause stands.
UPDATE rate_limit_buckets
SET paused_until = greatest(paused_until,
                            coalesce(%(now)s::timestamptz, clock_timestamp()) + make_interval(secs => %(seconds)s)),
    pauses = pauses + 1
WHERE name = %(name)s

-- name: get_bucket
SELECT name, next_slot_at, paused_until, reservations, pauses FROM rate_limit_buckets WHERE name = %(name)s
