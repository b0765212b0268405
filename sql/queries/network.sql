-- A district network (SPEC section 16; service/network): districts, stores, the
-- interchange's moves, clearing and settlements.

-- name: district_insert
INSERT INTO districts (id, name, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: district_get
SELECT d.id, d.name, d.request_hash, d.created_at,
       coalesce((SELECT array_agg(c.id ORDER BY c.id COLLATE "C") FROM communities c
                  WHERE c.district_id = d.id), '{}') AS communities
  FROM districts d
 WHERE d.id = $1;

-- name: district_lock
-- The district's row, locked: settlements of one district take turns.
SELECT id FROM districts WHERE id = $1 FOR UPDATE;

-- name: district_join
-- Community $2 joins district $1; its row says where it is when it was elsewhere.
-- A community belongs to one district.
WITH joined AS (
    UPDATE communities SET district_id = $1
     WHERE id = $2 AND (district_id IS NULL OR district_id = $1)
    RETURNING id
)
SELECT (SELECT count(*) FROM joined) = 1 AS joined,
       (SELECT c.district_id FROM communities c WHERE c.id = $2) AS district_id,
       EXISTS (SELECT 1 FROM communities c WHERE c.id = $2) AS found;

-- name: store_upsert
INSERT INTO stores AS s (community_id, id, name, district_wide)
VALUES ($1, $2, $3, $4)
ON CONFLICT (community_id, id) DO UPDATE
   -- The proposed row's default (now()): Citus takes no volatile function here.
   SET name = excluded.name, district_wide = excluded.district_wide,
       updated_at = excluded.updated_at
RETURNING s.id, s.name, s.district_wide, s.created_at, s.updated_at, (xmax = 0) AS created;

-- name: store_get
SELECT id, name, district_wide, created_at, updated_at
  FROM stores WHERE community_id = $1 AND id = $2;

-- name: interchange_sums
-- What moved between the communities $2 of district $1 in [$3, $4): per side, its
-- counterparty and asset, what left towards it (positive moves) and what came back
-- or in (negative ones, as a positive number).
SELECT m.community_id, m.counterparty, m.asset,
       coalesce(sum(m.amount) FILTER (WHERE m.amount > 0), 0)::bigint AS out,
       coalesce(-sum(m.amount) FILTER (WHERE m.amount < 0), 0)::bigint AS back,
       count(*) AS moves
  FROM interchange_moves m
 WHERE m.community_id = ANY ($2::text[]) AND m.district_id = $1
   AND m.created_at >= $3 AND m.created_at < $4
 GROUP BY m.community_id, m.counterparty, m.asset;

-- name: settlement_get
SELECT district_id, id, period_from, period_to, request_hash, moves, late, positions,
       created_by, created_at
  FROM settlements WHERE district_id = $1 AND id = $2;

-- name: settlement_list
SELECT district_id, id, period_from, period_to, request_hash, moves, late, positions,
       created_by, created_at
  FROM settlements WHERE district_id = $1
 ORDER BY period_from, id
 LIMIT $2;

-- name: settlement_overlap
-- A settlement of district $1 whose period overlaps [$2, $3), if any.
SELECT id FROM settlements
 WHERE district_id = $1 AND period_from < $3 AND period_to > $2
 LIMIT 1;

-- name: settlement_claim
-- Marks every move of the communities $2 of district $1 not yet settled and made
-- before $4 as settled by $3 (each row once: a row another settlement took first is
-- skipped after its lock), and says what they were; `late`: made before the
-- period's start $5 (committed after an earlier settlement of its own period).
-- A change is taken only once both of its sides are seen: on Citus the two sides
-- live on two workers, each read with its own snapshot, and a change whose commit
-- has reached one worker but not yet the other is left, whole, to the next
-- settlement (on one server both sides are always seen together).
WITH whole AS (
    SELECT change_id FROM interchange_moves
     WHERE community_id = ANY ($2::text[]) AND district_id = $1
       AND settlement_id IS NULL AND created_at < $4
     GROUP BY change_id
    HAVING count(DISTINCT community_id) = 2
)
UPDATE interchange_moves m SET settlement_id = $3
 WHERE m.community_id = ANY ($2::text[]) AND m.district_id = $1
   AND m.settlement_id IS NULL AND m.created_at < $4
   AND m.change_id IN (SELECT change_id FROM whole)
RETURNING m.community_id, m.counterparty, m.asset, m.amount, m.created_at < $5 AS late;

-- name: settlement_insert
INSERT INTO settlements (district_id, id, period_from, period_to, request_hash, moves, late,
                         positions, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING created_at;

-- name: interchange_tx_of
-- The row id of transaction $2 of community $1 (a side of a change).
SELECT id FROM transactions WHERE community_id = $1 AND client_id = $2;

-- name: interchange_write
-- A change between two communities (sql/functions/network.sql): $5 and $7 are the
-- ledger's writes of community $4's side and of $6's, as JSON text.
SELECT side, idx, outcome, tx_id, failure
  FROM interchange_write($1, $2, $3, $4, ledger_writes($5::text::jsonb), $6,
                         ledger_writes($7::text::jsonb));

-- name: member_free_lots
-- The free part of a member account's lots, in the order a debit takes them
-- (ledger_lots: expiry, then when earned, then id; lots that never expire last).
SELECT l.expires_at, l.earned_at, (l.remaining - l.held)::bigint AS free
  FROM lots l
  JOIN accounts a ON a.community_id = l.community_id AND a.id = l.account_id
 WHERE l.community_id = $1 AND a.address = $2 AND l.remaining - l.held > 0
 ORDER BY l.expires_at, l.earned_at, l.id;

-- Moving house (service/network/moves.py).

-- name: member_move_get
SELECT id, request_hash, member_id, to_community, to_member, carried, created_at
  FROM member_moves WHERE community_id = $1 AND id = $2;

-- name: member_move_insert
-- The move $2 of member $4 of community $1, unless the id is taken (a concurrent
-- move under it waits here until the other commits, then finds it taken).
INSERT INTO member_moves (community_id, id, request_hash, member_id, to_community, to_member,
                          district_id, carried, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING id;
