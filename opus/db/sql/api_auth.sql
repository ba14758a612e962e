-- Credentials of the REST API: API keys, the HMAC nonce store, and the API's own secrets.

-- name: insert_key
INSERT INTO api_keys (name, prefix, digest, scope)
VALUES (%(name)s, %(prefix)s, %(digest)s, %(scope)s)
RETURNING id

-- name: list_keys
SELECT id, name, prefix, scope, created_at, last_used_at, revoked_at
FROM api_keys
ORDER BY id

-- name: revoke_by_prefix
UPDATE api_keys SET revoked_at = %(now)s
WHERE prefix = %(prefix)s AND revoked_at IS NULL
RETURNING id

-- name: revoke_by_id
UPDATE api_keys SET revoked_at = %(now)s
WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id

-- name: key_by_prefix
SELECT id, name, scope, digest, revoked_at, last_used_at
FROM api_keys
WHERE prefix = %(prefix)s

-- name: touch_key
-- The guard makes concurrent processes write at most about once a minute per key.
UPDATE api_keys SET last_used_at = %(now)s
WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < %(now)s - interval '1 minute')

-- name: remember_nonce
-- No row back means this client already used the nonce: a replay.
INSERT INTO api_hmac_nonces (client_id, nonce, expires_at)
VALUES (%(client_id)s, %(nonce)s, %(expires_at)s)
ON CONFLICT (client_id, nonce) DO NOTHING
RETURNING nonce

-- name: prune_nonces
DELETE FROM api_hmac_nonces WHERE expires_at < %(now)s

-- name: ensure_secret
INSERT INTO api_secrets (name, value) VALUES (%(name)s, %(value)s)
ON CONFLICT (name) DO NOTHING

-- name: get_secret
SELECT value FROM api_secrets WHERE name = %(name)s
