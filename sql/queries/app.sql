-- The web app's sign-in links and sessions (service/sessions).

-- name: link_insert
INSERT INTO sign_in_links (community_id, id, token_hash, member_id, key_id, issued_by,
                           expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
RETURNING expires_at;

-- name: link_use
-- Single use: the first exchange sets used_at; any later one finds nothing.
UPDATE sign_in_links SET used_at = now()
 WHERE community_id = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()
RETURNING community_id, id, member_id, key_id;

-- name: session_insert
INSERT INTO app_sessions (id_hash, role, key_id, community_id, member_id, link_id, csrf,
                          expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8));

-- name: session_get
-- A live session and, for a staff session, its key while the key is not revoked.
SELECT s.role, s.key_id, s.community_id, s.member_id, s.link_id, s.csrf, s.expires_at,
       k.id AS live_key, k.property_company, k.store, k.teams, k.district_id
  FROM app_sessions s
  LEFT JOIN api_keys k ON k.id = s.key_id AND k.revoked_at IS NULL
 WHERE s.id_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now();

-- name: session_end
UPDATE app_sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL;

-- name: sessions_purge
-- Sessions and links long past use; run by the scheduler's housekeeping.
WITH gone AS (
    DELETE FROM app_sessions
     WHERE expires_at < now() - interval '7 days' OR ended_at < now() - interval '7 days'
)
DELETE FROM sign_in_links WHERE expires_at < now() - interval '30 days';
