-- Communities, households and members.

-- name: community_insert
WITH inserted AS (
    INSERT INTO communities (id, name, timezone, request_hash)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), head AS (
    INSERT INTO chain_heads (community_id) SELECT id FROM inserted
), system_accounts AS (
    -- Opened up front, so that no write waits on another's first use of them.
    INSERT INTO accounts (community_id, address, asset)
    SELECT i.id, a.address, a.asset
      FROM inserted i, unnest($5::text[], $6::text[]) AS a(address, asset)
)
SELECT count(*) = 1 AS created FROM inserted;

-- name: community_get
SELECT id, name, timezone, request_hash, created_at FROM communities WHERE id = $1;

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
SELECT m.id, m.household_id, m.name, m.request_hash, m.created_at, h.property_company
  FROM members m
  JOIN households h ON h.community_id = m.community_id AND h.id = m.household_id
 WHERE m.community_id = $1 AND m.id = $2;
