-- API keys: the secret is stored as its SHA-256 hash only.

-- name: key_insert
INSERT INTO api_keys (id, secret_hash, role, community_id, property_company, store, member_id,
                      teams, created_by, district_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING created_at;

-- name: key_get
SELECT id, secret_hash, role, community_id, property_company, store, member_id, teams,
       district_id
  FROM api_keys
 WHERE id = $1 AND revoked_at IS NULL;

-- name: key_scope
SELECT id, role, community_id FROM api_keys WHERE id = $1 AND revoked_at IS NULL;

-- name: key_revoke
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id;

-- name: keys_revoke_issued_by
-- The demo's staff keys of an earlier start (`serve --demo` issues new ones).
UPDATE api_keys SET revoked_at = now() WHERE created_by = $1 AND revoked_at IS NULL;
