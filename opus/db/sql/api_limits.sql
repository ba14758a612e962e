-- The shared per-credential request buckets (see migration 0008).

-- name: lease_tokens
-- Refill the bucket for the time since its last lease (at most `capacity`), then take up to `want` whole
-- tokens. A new credential starts with a full bucket. The clock is the caller's, so tests can step it.
INSERT INTO api_rate_buckets AS b (credential, tokens, leased, updated_at)
VALUES (%(credential)s, %(capacity)s - least(%(want)s, %(capacity)s), least(%(want)s, %(capacity)s), %(now)s)
ON CONFLICT (credential) DO UPDATE SET (tokens, leased, updated_at) = (
    SELECT r.refilled - least(%(want)s, floor(r.refilled)), least(%(want)s, floor(r.refilled)),
           greatest(b.updated_at, excluded.updated_at)
    FROM (SELECT least(%(capacity)s::double precision, b.tokens + %(rate)s::double precision
                       * greatest(0, extract(epoch FROM excluded.updated_at - b.updated_at))) AS refilled) AS r
)
RETURNING leased, tokens

-- name: prune_buckets
-- A bucket untouched for longer than it takes to refill is full again: the row can go.
DELETE FROM api_rate_buckets WHERE updated_at < %(before)s
