-- Communities, households and members.

-- name: community_insert
WITH inserted AS (
    INSERT INTO communities (id, name, timezone, language, request_hash)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), head AS (
    INSERT INTO chain_heads (community_id) SELECT id FROM inserted
), system_accounts AS (
    -- Opened up front, so that no write waits on another's first use of them.
    INSERT INTO accounts (community_id, address, asset)
    SELECT i.id, a.address, a.asset
      FROM inserted i, unnest($6::text[], $7::text[]) AS a(address, asset)
)
SELECT count(*) = 1 AS created FROM inserted;

-- name: community_get
SELECT id, name, timezone, language, request_hash, created_at, district_id
  FROM communities WHERE id = $1;

-- name: community_language
SELECT language FROM communities WHERE id = $1;

-- name: community_ids
SELECT id FROM communities ORDER BY id;

-- name: household_insert
INSERT INTO households (community_id, id, address, property_company, request_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING id;

-- name: household_get
SELECT id, address, property_company, request_hash, created_at
  FROM households WHERE community_id = $1 AND id = $2;

-- name: member_insert
INSERT INTO members (community_id, id, household_id, name, request_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING id;

-- name: member_open_accounts
INSERT INTO accounts (community_id, address, asset, member_id)
VALUES ($1, 'member:' || $2 || ':minutes', 'minutes', $2),
       ($1, 'member:' || $2 || ':points', 'points', $2);

-- name: member_get
SELECT m.id, m.household_id, m.name, m.request_hash, m.created_at, h.property_company,
       m.closed_at, m.close_reason
  FROM members m
  JOIN households h ON h.community_id = m.community_id AND h.id = m.household_id
 WHERE m.community_id = $1 AND m.id = $2;

-- Member lifecycle (service/setup/lifecycle.py): closing a member who moved out, and
-- moving a member to another household.

-- name: member_lock_accounts
-- Member $2's accounts, locked in the order every writer takes them (by address:
-- minutes before points), as they are once the locks are granted.
SELECT a.address, a.asset, a.posted, a.held, a.closed_at
  FROM accounts a
 WHERE a.community_id = $1
   AND a.address IN ('member:' || $2 || ':minutes', 'member:' || $2 || ':points')
 ORDER BY a.address COLLATE "C"
   FOR UPDATE;

-- name: member_pending
-- The pending transactions that name any of the accounts $2 (at most 20): holds on
-- them, and credits to them not yet posted or voided.
SELECT t.client_id
  FROM transactions t
 WHERE t.community_id = $1 AND t.status = 'pending'
   AND EXISTS (SELECT 1 FROM jsonb_array_elements(t.pending_postings) AS p
                WHERE p ->> 'source' = ANY ($2::text[])
                   OR p ->> 'destination' = ANY ($2::text[]))
 ORDER BY t.id
 LIMIT 20;

-- name: member_close
-- Closes member $2 and its accounts at one instant, $3 acting, for reason $4, the
-- transaction $5 (or null) having taken its balances; nothing when it already is.
WITH closed AS (
    UPDATE members m
       SET closed_at = now(), closed_by = $3, close_reason = $4, close_transaction = $5
     WHERE m.community_id = $1 AND m.id = $2 AND m.closed_at IS NULL
    RETURNING m.closed_at
)
UPDATE accounts a SET closed_at = c.closed_at
  FROM closed c
 WHERE a.community_id = $1
   AND a.address IN ('member:' || $2 || ':minutes', 'member:' || $2 || ':points');

-- name: member_lock_row
-- Member $2's household and whether it is closed, its row locked against another
-- move or a close. NO KEY UPDATE: rows that only refer to the member (its events,
-- offsets, redemptions) are not held up.
SELECT m.household_id, m.closed_at
  FROM members m
 WHERE m.community_id = $1 AND m.id = $2
   FOR NO KEY UPDATE;

-- name: member_move
-- Moves member $2 from household $3 to $4, $5 acting, and records the change.
WITH moved AS (
    UPDATE members m SET household_id = $4
     WHERE m.community_id = $1 AND m.id = $2 AND m.household_id = $3
    RETURNING m.id
)
INSERT INTO member_households (community_id, member_id, from_household, to_household, changed_by)
SELECT $1, moved.id, $3, $4, $5 FROM moved;

-- name: member_households
SELECT from_household, to_household, changed_at, changed_by
  FROM member_households
 WHERE community_id = $1 AND member_id = $2
 ORDER BY seq;

-- name: member_closed
-- Whether member $2 is closed (no row: there is no such member).
SELECT closed_at IS NOT NULL AS closed FROM members WHERE community_id = $1 AND id = $2;

-- name: accounts_closed
-- Which of the accounts $2 are closed members'.
SELECT address FROM accounts
 WHERE community_id = $1 AND address = ANY ($2::text[]) AND closed_at IS NOT NULL;

-- Lists for the community office's pages (service/web/pages/operator.py).

-- name: member_search
-- Members whose id, name, household or address contains $2 (a LIKE pattern; null:
-- all), by id, at most $3, with their household's address and their score (the
-- points account's posted balance, which a member account's row keeps live).
SELECT m.id, m.name, m.household_id, h.address, a.posted AS score, m.closed_at
  FROM members m
  JOIN households h ON h.community_id = m.community_id AND h.id = m.household_id
  JOIN accounts a ON a.community_id = m.community_id AND a.address = 'member:' || m.id || ':points'
 WHERE m.community_id = $1
   AND ($2::text IS NULL OR m.id ILIKE $2 OR m.name ILIKE $2 OR m.household_id ILIKE $2
        OR h.address ILIKE $2)
 ORDER BY m.id
 LIMIT $3;

-- name: household_list
-- Households by id, at most $2, each with its members who have not moved out.
SELECT h.id, h.address, h.property_company,
       coalesce(array_agg(m.id ORDER BY m.id) FILTER (WHERE m.id IS NOT NULL), '{}') AS member_ids,
       coalesce(array_agg(coalesce(m.name, '') ORDER BY m.id) FILTER (WHERE m.id IS NOT NULL),
                '{}') AS member_names
  FROM households h
  LEFT JOIN members m ON m.community_id = h.community_id AND m.household_id = h.id
                     AND m.closed_at IS NULL
 WHERE h.community_id = $1
 GROUP BY h.id, h.address, h.property_company
 ORDER BY h.id
 LIMIT $2;
