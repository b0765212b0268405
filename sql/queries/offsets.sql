-- Property-fee offsets. An offset's status comes from its ledger transaction
-- (client id 'offset:' || id) and that transaction's reversal, if any.

-- name: offset_insert
INSERT INTO offsets (community_id, id, request_hash, member_id, household_id, property_company,
                     bill_amount_fen, points, fen_per_point, offset_fen, year_key, hold,
                     rule_version, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING id;

-- name: offset_household_lock
-- Serialises the offsets of one household, so its yearly cap is exact. NO KEY UPDATE
-- does not block adding members (their foreign key takes KEY SHARE).
SELECT property_company FROM households
 WHERE community_id = $1 AND id = $2
   FOR NO KEY UPDATE;

-- name: offset_household_used
-- Fen of the household's offsets in year $3 that are held (and not past their
-- expiry: such a hold can no longer be applied) or applied and not reversed.
SELECT coalesce(sum(o.offset_fen), 0)::bigint AS used_fen
  FROM offsets o
  JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
 WHERE o.community_id = $1 AND o.household_id = $2 AND o.year_key = $3
   AND ((t.status = 'pending' AND (t.expires_at IS NULL OR t.expires_at > now()))
        OR (t.status = 'posted' AND NOT EXISTS (
                SELECT 1 FROM transactions r
                 WHERE r.community_id = t.community_id AND r.reversal_of = t.id)));

-- name: offset_get
SELECT o.id, o.seq, o.request_hash, o.member_id, o.household_id, o.property_company,
       o.bill_amount_fen, o.points, o.fen_per_point, o.offset_fen, o.year_key, o.hold,
       o.rule_version, o.created_at,
       t.status AS tx_status, t.void_reason, t.expires_at, t.finalized_at,
       r.created_at AS reversed_at
  FROM offsets o
  JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.reversal_of = t.id
 WHERE o.community_id = $1 AND o.id = $2;

-- name: offset_list
-- $2 company (null: all), $3/$4 created_at window, $5 seq cursor (exclusive), $6 limit.
SELECT o.id, o.seq, o.request_hash, o.member_id, o.household_id, o.property_company,
       o.bill_amount_fen, o.points, o.fen_per_point, o.offset_fen, o.year_key, o.hold,
       o.rule_version, o.created_at,
       t.status AS tx_status, t.void_reason, t.expires_at, t.finalized_at,
       r.created_at AS reversed_at
  FROM offsets o
  JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.reversal_of = t.id
 WHERE o.community_id = $1 AND ($2::text IS NULL OR o.property_company = $2)
   AND o.created_at >= $3 AND o.created_at < $4 AND o.seq < $5
 ORDER BY o.seq DESC
 LIMIT $6;

-- name: offset_totals
-- Settlement totals of the same filter: applied (posted, not reversed) and held.
SELECT count(*) FILTER (WHERE t.status = 'posted' AND r.id IS NULL) AS applied_count,
       coalesce(sum(o.points) FILTER (WHERE t.status = 'posted' AND r.id IS NULL), 0)::bigint
         AS applied_points,
       coalesce(sum(o.offset_fen) FILTER (WHERE t.status = 'posted' AND r.id IS NULL), 0)::bigint
         AS applied_fen,
       count(*) FILTER (WHERE t.status = 'pending' AND (t.expires_at IS NULL OR t.expires_at > now()))
         AS held_count,
       coalesce(sum(o.points) FILTER (WHERE t.status = 'pending'
                AND (t.expires_at IS NULL OR t.expires_at > now())), 0)::bigint AS held_points,
       coalesce(sum(o.offset_fen) FILTER (WHERE t.status = 'pending'
                AND (t.expires_at IS NULL OR t.expires_at > now())), 0)::bigint AS held_fen
  FROM offsets o
  JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.reversal_of = t.id
 WHERE o.community_id = $1 AND ($2::text IS NULL OR o.property_company = $2)
   AND o.created_at >= $3 AND o.created_at < $4;
