-- Property-fee offsets. An offset's status comes from its ledger transaction
-- (client id 'offset:' || id) and that transaction's reversal, if any.

-- name: offset_create
-- Creates an offset and its ledger transaction in one statement; $16 says whether
-- it needs the member's mandate, $17 is the ledger's write as JSON text
-- (service/ledger/service.write_document).
SELECT outcome, used_fen, created_at, tx_id, expires_at, failure, mandate_id, mandate_cap,
       mandate_used
  FROM offset_create($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     ledger_writes($17::text::jsonb));

-- name: offset_household_used
-- What the household's offsets of year $3 take of its yearly cap now.
SELECT offset_household_used($1, $2, $3) AS used_fen;

-- name: offset_get
-- With what applying it needs: its transaction's row id and what that one holds.
-- With statistics this is three index probes (0.05 ms among 30,000 offsets). A plan
-- made while `offsets` is empty and never analyzed (a new database's first minute;
-- the benchmark seeds a little history and analyzes for this reason) can read
-- every offset of the community instead: each
-- index's estimate is then one row, the costs tie, and the planner keeps the newest
-- index (offsets_by_company) and filters on `id`. A connection keeps that generic
-- plan until the table's first ANALYZE (autovacuum: after 50 offsets, within its
-- naptime) invalidates it.
SELECT o.id, o.seq, o.request_hash, o.member_id, o.household_id, o.property_company,
       o.bill_amount_fen, o.points, o.fen_per_point, o.offset_fen, o.year_key, o.hold,
       o.rule_version, o.created_at, o.mandate_id,
       t.status AS tx_status, t.void_reason, t.expires_at, t.finalized_at,
       t.id AS tx_id, t.pending_postings,
       r.created_at AS reversed_at
  FROM offsets o
  JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.reversal_of = t.id
 WHERE o.community_id = $1 AND o.id = $2;

-- name: offset_list
-- $2 company (null: all), $3/$4 created_at window, $5 seq cursor (exclusive), $6 limit.
SELECT o.id, o.seq, o.request_hash, o.member_id, o.household_id, o.property_company,
       o.bill_amount_fen, o.points, o.fen_per_point, o.offset_fen, o.year_key, o.hold,
       o.rule_version, o.created_at, o.mandate_id,
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
