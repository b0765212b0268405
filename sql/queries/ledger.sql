-- The ledger: transactions, balances, entries, sealing, expiry.

-- name: ledger_write
-- $2 is the writes as JSON (store.document), $3 whether to skip locked rows.
SELECT w.idx, w.outcome, w.tx_id, w.created_at, w.expires_at, w.finalized_at, w.failure
  FROM ledger_write($1, ledger_writes($2::text::jsonb), $3) AS w
 ORDER BY w.idx;

-- name: tx_get_many
-- (`e.community_id = $1` in the subquery, not `= t.community_id`: Citus does not
-- always see that the correlated subquery reads the one community's shard beside
-- the LEFT JOIN, and then refuses the query as a join across shards.)
SELECT t.id, t.client_id, t.kind, t.status, t.pending_postings, t.memo, t.metadata,
       t.reason, t.rule_id, t.rule_version, t.event_id, t.actor, t.on_behalf_of,
       t.created_at, t.expires_at,
       t.finalized_at, t.void_reason, t.request_hash,
       r.client_id AS reversal_of,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(a.address, a.asset, e.amount) ORDER BY e.leg),
                        '[]'::jsonb)
          FROM entries e
          JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
         WHERE e.community_id = $1 AND e.tx_id = t.id) AS legs
  FROM transactions t
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.id = t.reversal_of
 WHERE t.community_id = $1 AND t.client_id = ANY ($2::text[]);

-- name: tx_get
-- (`e.community_id = $1` in the subquery, as in tx_get_many: see there.)
SELECT t.id, t.client_id, t.kind, t.status, t.pending_postings, t.memo, t.metadata,
       t.reason, t.rule_id, t.rule_version, t.event_id, t.actor, t.on_behalf_of,
       t.created_at, t.expires_at,
       t.finalized_at, t.void_reason, t.request_hash,
       r.client_id AS reversal_of,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(a.address, a.asset, e.amount) ORDER BY e.leg),
                        '[]'::jsonb)
          FROM entries e
          JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
         WHERE e.community_id = $1 AND e.tx_id = t.id) AS legs
  FROM transactions t
  LEFT JOIN transactions r ON r.community_id = t.community_id AND r.id = t.reversal_of
 WHERE t.community_id = $1 AND (t.client_id = $2 OR t.id = $3);

-- name: tx_reversed_by
SELECT client_id FROM transactions WHERE community_id = $1 AND reversal_of = $2;

-- name: account_get
SELECT a.id, a.address, a.asset, a.member_id IS NOT NULL AS limited, a.held,
       a.posted + CASE WHEN a.member_id IS NOT NULL THEN 0 ELSE coalesce(
           (SELECT sum(e.amount)
              FROM seal_queue q
              JOIN entries e ON e.community_id = q.community_id AND e.tx_id = q.tx_id
             WHERE q.community_id = $1 AND e.account_id = a.id), 0)::bigint END
         AS posted
  FROM accounts a
 WHERE a.community_id = $1 AND a.address = $2;

-- name: account_pending
SELECT coalesce(sum((p ->> 'amount')::bigint) FILTER (WHERE p ->> 'source' = $2), 0)::bigint
         AS debits,
       coalesce(sum((p ->> 'amount')::bigint) FILTER (WHERE p ->> 'destination' = $2), 0)::bigint
         AS credits
  FROM transactions t, jsonb_array_elements(t.pending_postings) AS p
 WHERE t.community_id = $1 AND t.status = 'pending';

-- name: account_posted_as_of
SELECT coalesce(sum(e.amount), 0)::bigint AS posted
  FROM entries e
 WHERE e.community_id = $1 AND e.account_id = $2 AND e.created_at <= $3;

-- name: account_entries
-- By address, so a page costs one round trip; an empty page does not tell an
-- account without entries from no account at all (the caller asks then).
SELECT e.seq, e.amount, e.balance_after, e.created_at,
       t.client_id AS transaction_id, t.kind, t.memo, t.reason, t.rule_id, t.rule_version,
       t.event_id, t.actor, t.on_behalf_of,
       (SELECT a2.address
          FROM entries e2
          JOIN accounts a2 ON a2.community_id = e2.community_id AND a2.id = e2.account_id
         WHERE e2.community_id = $1 AND e2.tx_id = e.tx_id
           AND e2.leg = (e.leg # 1)::smallint) AS counterparty
  FROM entries e
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
 WHERE e.community_id = $1
   AND e.account_id = (SELECT a.id FROM accounts a WHERE a.community_id = $1 AND a.address = $2)
   AND e.seq < $3 AND e.created_at >= $4 AND e.created_at < $5
 ORDER BY e.seq DESC
 LIMIT $6;

-- name: member_balances
SELECT asset, posted, held
  FROM accounts
 WHERE community_id = $1 AND address = ANY ($2::text[]);

-- name: pending_expired
SELECT t.community_id, t.id
  FROM transactions t
 WHERE t.status = 'pending' AND t.expires_at IS NOT NULL AND t.expires_at <= $1
 ORDER BY t.expires_at
 LIMIT $2;

-- name: seal
SELECT ledger_seal($1, $2) AS sealed;

-- name: seal_backlog
SELECT DISTINCT community_id FROM seal_queue;

-- name: seal_lag_s
-- How far the sealer trails: the age of the oldest final transaction still queued.
SELECT coalesce(extract(epoch FROM now() - min(t.finalized_at)), 0)::float8 AS lag_s
  FROM seal_queue q
  JOIN transactions t ON t.community_id = q.community_id AND t.id = q.tx_id;
