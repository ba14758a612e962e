-- Feeds as configuration and one Nivoda rate limit for all of Opus.
-- Runs, partitions, raw rows, deletions and pricing rules are scoped by feed already; a run keeps its feed's
-- query in its plan document (`plan -> 'feed_query'`), so nothing here changes for them.

-- One token bucket per upstream, shared by every thread, process and instance: the next free request slot and
-- a pause that a 429 sets for the whole fleet. One row, updated once per request; no lease or owner is kept,
-- so a process that dies holds nothing.
CREATE TABLE rate_limit_buckets (
    name          text PRIMARY KEY,
    next_slot_at  timestamptz NOT NULL DEFAULT '-infinity',
    paused_until  timestamptz NOT NULL DEFAULT '-infinity',
    reservations  bigint      NOT NULL DEFAULT 0,
    pauses        bigint      NOT NULL DEFAULT 0
);

INSERT INTO rate_limit_buckets (name) VALUES ('nivoda');
