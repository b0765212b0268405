-- People (SPEC section 11): proxies (亲情代理).

-- name: proxy_scopes
-- The scopes member $3 holds for member $2 now; no row when it holds none. The
-- primary key answers it: this runs on every act of a resident for another member.
SELECT scopes
  FROM proxies
 WHERE community_id = $1 AND member_id = $2 AND proxy_id = $3 AND revoked_at IS NULL;

-- name: proxy_grant
-- A new grant, or new scopes for one in force, or a revoked one granted again
-- (its revocation cleared). An unknown member or proxy fails its foreign key.
INSERT INTO proxies AS p (community_id, member_id, proxy_id, scopes, granted_by)
VALUES ($1, $2, $3, $4::text[], $5)
ON CONFLICT (community_id, member_id, proxy_id) DO UPDATE
   SET scopes = excluded.scopes, granted_by = excluded.granted_by,
       granted_at = excluded.granted_at,  -- its default, now() (Citus: no now() here)
       revoked_at = NULL, revoked_by = NULL
RETURNING p.member_id, p.proxy_id, p.scopes, p.granted_by, p.granted_at, p.revoked_at,
          p.revoked_by;

-- name: proxy_revoke
-- Only a grant in force: revoking twice finds nothing the second time.
UPDATE proxies AS p
   SET revoked_at = now(), revoked_by = $4
 WHERE p.community_id = $1 AND p.member_id = $2 AND p.proxy_id = $3 AND p.revoked_at IS NULL
RETURNING p.member_id, p.proxy_id, p.scopes, p.granted_by, p.granted_at, p.revoked_at,
          p.revoked_by;

-- name: proxies_of_member
SELECT p.member_id, p.proxy_id, p.scopes, p.granted_by, p.granted_at, p.revoked_at,
       p.revoked_by
  FROM proxies p
 WHERE p.community_id = $1 AND p.member_id = $2 AND p.revoked_at IS NULL
 ORDER BY p.proxy_id;

-- name: proxies_held_by
-- The grants in force that member $2 holds for others: whom it may act for
-- (proxies_by_proxy answers it).
SELECT p.member_id, p.proxy_id, p.scopes, p.granted_by, p.granted_at, p.revoked_at,
       p.revoked_by
  FROM proxies p
 WHERE p.community_id = $1 AND p.proxy_id = $2 AND p.revoked_at IS NULL
 ORDER BY p.member_id;
