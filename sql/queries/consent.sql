-- Consent (SPEC section 10): spend codes, PINs, mandates. Spend codes are used up
-- inside the redemption's write (sql/functions/supermarket.sql) and mandates are
-- checked inside the offset's (sql/functions/offsets.sql); these are the rest.

-- name: spend_code_insert
INSERT INTO spend_codes
    (community_id, code_hash, member_id, max_points, store, expires_at, issued_by, on_behalf_of)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8)
RETURNING expires_at;

-- name: pin_set
INSERT INTO member_pins AS p
    (community_id, member_id, pin_hash, failures, locked_until, set_by, set_at)
VALUES ($1, $2, $3, 0, NULL, $4, now())
ON CONFLICT (community_id, member_id) DO UPDATE
   SET pin_hash = excluded.pin_hash, failures = 0, locked_until = NULL,
       set_by = excluded.set_by, set_at = excluded.set_at
RETURNING set_at;

-- name: pin_attempt
-- Reserves one try before the PIN is checked: the stored hash (null: no PIN), or no
-- row while locked (sql/functions/consent.sql, which says why it is a function).
SELECT a.pin_hash FROM pin_attempt($1, $2, $3, $4) AS a;

-- name: pin_passed
UPDATE member_pins SET failures = 0, locked_until = NULL
 WHERE community_id = $1 AND member_id = $2;

-- name: mandate_put
-- Grants or replaces the mandate of (member, company): a new id each time.
-- (`excluded.…`, the column's default now(), rather than now(): Citus takes only
-- immutable functions in DO UPDATE SET on a distributed table.)
WITH m AS (
    INSERT INTO mandates AS d
        (community_id, member_id, property_company, id, max_points_per_bill,
         max_points_per_year, granted_by, on_behalf_of)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (community_id, member_id, property_company) DO UPDATE
       SET id = excluded.id, max_points_per_bill = excluded.max_points_per_bill,
           max_points_per_year = excluded.max_points_per_year,
           granted_by = excluded.granted_by, on_behalf_of = excluded.on_behalf_of,
           granted_at = excluded.granted_at, revoked_at = NULL, revoked_by = NULL
    RETURNING d.*
), logged AS (
    INSERT INTO mandate_log
        (community_id, mandate_id, member_id, property_company, action,
         max_points_per_bill, max_points_per_year, actor, on_behalf_of)
    SELECT community_id, id, member_id, property_company, 'granted',
           max_points_per_bill, max_points_per_year, granted_by, on_behalf_of
      FROM m
)
SELECT * FROM m;

-- name: mandate_revoke
WITH m AS (
    UPDATE mandates SET revoked_at = now(), revoked_by = $4
     WHERE community_id = $1 AND member_id = $2 AND property_company = $3
       AND revoked_at IS NULL
    RETURNING *
), logged AS (
    INSERT INTO mandate_log
        (community_id, mandate_id, member_id, property_company, action, actor, on_behalf_of)
    SELECT community_id, id, member_id, property_company, 'revoked', $4, $5 FROM m
)
SELECT * FROM m;

-- name: mandate_list
-- A member's mandates in force ($3: only that company's, null: all), with the
-- points they have used this year ($4, the year key of offsets).
SELECT d.*, offset_mandate_used(d.community_id, d.member_id, d.property_company, $4)
           AS used_points_this_year
  FROM mandates d
 WHERE d.community_id = $1 AND d.member_id = $2 AND d.revoked_at IS NULL
   AND ($3::text IS NULL OR d.property_company = $3)
 ORDER BY d.property_company;

-- name: mandate_used
SELECT offset_mandate_used($1, $2, $3, $4);

-- name: spend_code_holder
-- The member an unused, unexpired spend code stands for, if store $3 may take it
-- (the till's look-up before the basket): read only, the code is not used up.
-- A code that is unknown, used, expired or another store's finds no row alike.
SELECT member_id, max_points, store, expires_at
  FROM spend_codes
 WHERE community_id = $1 AND code_hash = $2 AND used_by IS NULL
   AND expires_at > clock_timestamp() AND (store IS NULL OR store = $3);

-- name: spend_code_holder_elsewhere
-- As spend_code_holder, for the till of a district-wide store: the community and
-- member of an unused, unexpired code $1 of one of the communities $2 (the other
-- communities of the store's district). A store-limited code never matches: its
-- store is one of its own community's. A code of any other community, used,
-- expired or unknown finds no row alike. One primary-key probe per community.
SELECT community_id, member_id, max_points, store, expires_at
  FROM spend_codes
 WHERE community_id = ANY ($2::text[]) AND code_hash = $1 AND used_by IS NULL
   AND expires_at > clock_timestamp() AND store IS NULL
 ORDER BY community_id COLLATE "C"
 LIMIT 1;
