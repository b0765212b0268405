-- audit/verify: each query returns the rows that break one invariant. They run
-- together in one REPEATABLE READ snapshot.

-- name: audit_count
SELECT count(*) AS transactions FROM transactions WHERE community_id = $1;

-- name: audit_unbalanced
SELECT t.client_id, a.asset, sum(e.amount)::bigint AS imbalance
  FROM entries e
  JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
 WHERE e.community_id = $1
 GROUP BY t.client_id, a.asset
HAVING sum(e.amount) <> 0;

-- name: audit_stored_balances
SELECT a.address, a.posted AS stored,
       coalesce(sum(e.amount) FILTER (WHERE a.member_id IS NOT NULL OR q.tx_id IS NULL), 0)::bigint
         AS expected
  FROM accounts a
  LEFT JOIN entries e ON e.community_id = a.community_id AND e.account_id = a.id
  LEFT JOIN seal_queue q ON q.community_id = e.community_id AND q.tx_id = e.tx_id
 WHERE a.community_id = $1
 GROUP BY a.address, a.posted
HAVING a.posted <> coalesce(sum(e.amount) FILTER (WHERE a.member_id IS NOT NULL OR q.tx_id IS NULL), 0);

-- name: audit_held
WITH legs AS (
    SELECT t.id, p ->> 'source' AS address, -(p ->> 'amount')::bigint AS amount
      FROM transactions t, jsonb_array_elements(t.pending_postings) AS p
     WHERE t.community_id = $1 AND t.status = 'pending'
    UNION ALL
    SELECT t.id, p ->> 'destination', (p ->> 'amount')::bigint
      FROM transactions t, jsonb_array_elements(t.pending_postings) AS p
     WHERE t.community_id = $1 AND t.status = 'pending'
), net AS (
    SELECT id, address, sum(amount) AS amount FROM legs GROUP BY id, address
), expected AS (
    SELECT address, sum(-amount)::bigint AS held FROM net WHERE amount < 0 GROUP BY address
)
SELECT a.address, a.held AS stored, coalesce(x.held, 0)::bigint AS expected
  FROM accounts a
  LEFT JOIN expected x ON x.address = a.address
 WHERE a.community_id = $1 AND a.member_id IS NOT NULL AND a.held <> coalesce(x.held, 0);

-- name: audit_asset_sums
SELECT a.asset, sum(e.amount)::bigint AS total
  FROM entries e
  JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
 WHERE e.community_id = $1
 GROUP BY a.asset
HAVING sum(e.amount) <> 0;

-- name: audit_running_balances
SELECT address, seq, balance_after, running
  FROM (SELECT a.address, e.seq, e.balance_after,
               sum(e.amount) OVER (PARTITION BY e.account_id ORDER BY e.seq) AS running
          FROM entries e
          JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
         WHERE e.community_id = $1 AND a.member_id IS NOT NULL) x
 WHERE balance_after IS DISTINCT FROM running;

-- name: audit_limits
SELECT address, asset, posted, held
  FROM accounts
 WHERE community_id = $1 AND member_id IS NOT NULL
   AND posted - held < CASE WHEN asset = 'minutes' THEN 0 ELSE $2 END;

-- name: audit_unsealed
SELECT t.client_id, t.status
  FROM transactions t
 WHERE t.community_id = $1 AND t.status <> 'pending'
   AND NOT EXISTS (SELECT 1 FROM seals s WHERE s.community_id = t.community_id AND s.tx_id = t.id)
   AND NOT EXISTS (SELECT 1 FROM seal_queue q
                    WHERE q.community_id = t.community_id AND q.tx_id = t.id);

-- name: audit_chain
SELECT seq, tx_id, problem FROM ledger_verify_chain($1);
