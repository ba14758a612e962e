-- REST API limits shared by every API process: the per-credential request buckets, and HMAC replay
-- protection keyed by the client's nonce instead of the signature.

-- One token bucket per credential. Processes lease a few tokens at a time from here (one round trip per
-- lease, not per request), so the limit holds across every instance while costing little per request.
-- `leased` is what the last lease took, so that one upsert can say both what it took and what is left.
CREATE TABLE api_rate_buckets (
    credential text PRIMARY KEY,
    tokens     double precision NOT NULL,
    leased     integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);

-- A signed request names a nonce the client never reuses; the pair is accepted once while its timestamp is
-- inside the freshness window, after which the timestamp check alone refuses it and the row is pruned.
CREATE TABLE api_hmac_nonces (
    client_id  text NOT NULL,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, nonce)
);
CREATE INDEX api_hmac_nonces_expiry ON api_hmac_nonces (expires_at);

-- Signatures were the replay key before nonces were signed; every one of them has expired by now.
DROP TABLE api_hmac_signatures;
