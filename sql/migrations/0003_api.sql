-- REST API: grade-order sort keys for search, the HMAC replay store, the signing key of search cursors,
-- and the columns that let a purchase be answered again for the same Idempotency-Key.

-- Colour and clarity sort by grade (D before E, FL before IF), not by spelling. Stored generated columns keep
-- the keyset indexes plain (sort key, id) like the others. Unknown or missing grades sort last (99).
-- Colour: a letter D..Z, or a range such as "M-N" ranked by its first letter; FANCY after every letter.
ALTER TABLE diamonds
    ADD COLUMN color_rank smallint NOT NULL GENERATED ALWAYS AS (
        CASE
            WHEN color ~ '^[D-Z]([- ]?[D-Z])?$' THEN ascii(left(color, 1)) - 67
            WHEN color = 'FANCY' THEN 50
            ELSE 99
        END
    ) STORED,
    ADD COLUMN clarity_rank smallint NOT NULL GENERATED ALWAYS AS (
        CASE clarity
            WHEN 'FL' THEN 1 WHEN 'IF' THEN 2 WHEN 'VVS1' THEN 3 WHEN 'VVS2' THEN 4
            WHEN 'VS1' THEN 5 WHEN 'VS2' THEN 6 WHEN 'SI1' THEN 7 WHEN 'SI2' THEN 8 WHEN 'SI3' THEN 9
            WHEN 'I1' THEN 10 WHEN 'I2' THEN 11 WHEN 'I3' THEN 12
            ELSE 99
        END
    ) STORED;

CREATE INDEX diamonds_active_color ON diamonds (color_rank, id) WHERE status = 'active';
CREATE INDEX diamonds_active_clarity ON diamonds (clarity_rank, id) WHERE status = 'active';

-- HMAC replay protection shared by every API process: a signature is accepted once while its timestamp is
-- inside the freshness window; afterwards the timestamp check alone refuses it, so the row can be pruned.
CREATE TABLE api_hmac_signatures (
    signature  text PRIMARY KEY,
    client_id  text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX api_hmac_signatures_expiry ON api_hmac_signatures (expires_at);

-- Secrets the API creates for itself (the search-cursor signing key), shared by every instance so that a
-- cursor issued by one is accepted by another. Created on first use when missing.
CREATE TABLE api_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A purchase's first answer, replayed verbatim when the same Idempotency-Key comes again. The body is text,
-- not jsonb, because jsonb reorders keys and the repeat must be byte-for-byte the first answer.
ALTER TABLE purchase_history
    ADD COLUMN response_status integer,
    ADD COLUMN response_body   text;

-- One order per stone: two purchases with different keys must not both reach the feed.
CREATE UNIQUE INDEX purchase_history_one_open ON purchase_history (diamond_id)
    WHERE status IN ('pending', 'placed');

-- The API asks "the live hold of this stone" on every hold, release and purchase.
CREATE INDEX hold_history_diamond ON hold_history (diamond_id, created_at DESC);
