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
   AND NOT EXISTS (SELECT 1 FROM seals s WHERE s.community_id = $1 AND s.tx_id = t.id)
   AND NOT EXISTS (SELECT 1 FROM seal_queue q
                    WHERE q.community_id = $1 AND q.tx_id = t.id);

-- name: audit_chain
SELECT seq, tx_id, problem FROM ledger_verify_chain($1);

-- name: audit_lots_cover
-- Member accounts whose open lots, less what is uncovered, are not their posted
-- balance, or whose holds are not what they hold.
SELECT a.address, a.posted, a.held, a.uncovered,
       coalesce(l.remaining, 0) AS remaining, coalesce(h.amount, 0) AS holds
  FROM accounts a
  LEFT JOIN (SELECT account_id, sum(remaining) AS remaining FROM lots
              WHERE community_id = $1 GROUP BY account_id) l ON l.account_id = a.id
  LEFT JOIN (SELECT account_id, sum(amount) AS amount FROM lot_holds
              WHERE community_id = $1 GROUP BY account_id) h ON h.account_id = a.id
 WHERE a.community_id = $1 AND a.member_id IS NOT NULL
   AND (coalesce(l.remaining, 0) - a.uncovered <> a.posted OR coalesce(h.amount, 0) <> a.held);

-- name: audit_lot_uses
-- Lots whose remaining is not their amount less the net of their uses, or whose
-- held is not what pending transactions hold of them.
SELECT l.id, l.amount, l.remaining, l.held,
       coalesce(u.used, 0) AS used, coalesce(h.amount, 0) AS holds
  FROM lots l
  LEFT JOIN (SELECT lot_id, sum(amount) AS used FROM lot_uses
              WHERE community_id = $1 AND lot_id IS NOT NULL GROUP BY lot_id) u ON u.lot_id = l.id
  LEFT JOIN (SELECT lot_id, sum(amount) AS amount FROM lot_holds
              WHERE community_id = $1 AND lot_id IS NOT NULL GROUP BY lot_id) h ON h.lot_id = l.id
 WHERE l.community_id = $1
   AND (l.remaining <> l.amount - coalesce(u.used, 0) OR l.held <> coalesce(h.amount, 0));

-- name: audit_tx_lots
-- Transactions whose change to a member account is not the lots they made less
-- what they consumed (consumption records sum to each debit).
WITH nets AS (
    SELECT e.tx_id, e.account_id, sum(e.amount) AS net
      FROM entries e
      JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
     WHERE e.community_id = $1 AND a.member_id IS NOT NULL
       AND e.tx_id >= coalesce((SELECT first_tx FROM lot_epochs WHERE community_id = $1), 0)
     GROUP BY e.tx_id, e.account_id
)
SELECT t.client_id, a.address, n.net, coalesce(l.made, 0) AS made, coalesce(u.used, 0) AS used
  FROM nets n
  JOIN transactions t ON t.community_id = $1 AND t.id = n.tx_id
  JOIN accounts a ON a.community_id = $1 AND a.id = n.account_id
  LEFT JOIN (SELECT transaction_id, account_id, sum(amount) AS made FROM lots
              WHERE community_id = $1 GROUP BY 1, 2) l
         ON l.transaction_id = n.tx_id AND l.account_id = n.account_id
  LEFT JOIN (SELECT tx_id, account_id, sum(amount) AS used FROM lot_uses
              WHERE community_id = $1 GROUP BY 1, 2) u
         ON u.tx_id = n.tx_id AND u.account_id = n.account_id
 WHERE n.net <> coalesce(l.made, 0) - coalesce(u.used, 0);

-- name: audit_undo_lots
-- Undos that gave a lot back more than the undone transaction consumed of it.
SELECT t.client_id, r.lot_id, r.restored, coalesce(c.consumed, 0) AS consumed
  FROM (SELECT undoes, account_id, lot_id, -sum(amount) AS restored FROM lot_uses
         WHERE community_id = $1 AND undoes IS NOT NULL GROUP BY 1, 2, 3) r
  LEFT JOIN (SELECT tx_id, account_id, lot_id, sum(amount) AS consumed FROM lot_uses
              WHERE community_id = $1 AND amount > 0 AND undoes IS NULL GROUP BY 1, 2, 3) c
         ON c.tx_id = r.undoes AND c.account_id = r.account_id
        AND c.lot_id IS NOT DISTINCT FROM r.lot_id
  JOIN transactions t ON t.community_id = $1 AND t.id = r.undoes
 WHERE r.restored > coalesce(c.consumed, 0);

-- The district network (SPEC section 16). Each community's interchange account for
-- another mirrors that community's account for it: their balances are opposite, but
-- for the changes seen on one side only (`one_sided`). On one server both sides are
-- read in one snapshot, so there are none unless a side is missing, which
-- `audit_interchange_sides` reports. On Citus each worker's part of the read has its
-- own snapshot, and a change whose two-phase commit has reached one worker only is
-- in flight, not a broken mirror (docs/scaling.md).
-- name: audit_interchange_mirror
WITH district AS (
    SELECT c.id FROM communities c
     WHERE c.district_id = (SELECT x.district_id FROM communities x WHERE x.id = $1)
       AND c.id <> $1
), mine AS (
    SELECT split_part(a.address, ':', 2) AS other, a.asset,
           coalesce(sum(e.amount), 0)::bigint AS balance
      FROM accounts a
      LEFT JOIN entries e ON e.community_id = a.community_id AND e.account_id = a.id
     WHERE a.community_id = $1 AND a.address LIKE 'interchange:%'
     GROUP BY 1, 2
), theirs AS (
    SELECT a.community_id AS other, a.asset, coalesce(sum(e.amount), 0)::bigint AS balance
      FROM accounts a
      LEFT JOIN entries e ON e.community_id = a.community_id AND e.account_id = a.id
     WHERE a.community_id IN (SELECT id FROM district)
       AND a.address IN ('interchange:' || $1 || ':points', 'interchange:' || $1 || ':minutes')
     GROUP BY 1, 2
), my_moves AS (
    SELECT m.change_id, m.asset, m.counterparty AS other, sum(m.amount)::bigint AS amount
      FROM interchange_moves m WHERE m.community_id = $1
     GROUP BY 1, 2, 3
), their_moves AS (
    SELECT m.change_id, m.asset, m.community_id AS other, sum(m.amount)::bigint AS amount
      FROM interchange_moves m
     WHERE m.community_id IN (SELECT id FROM district) AND m.counterparty = $1
     GROUP BY 1, 2, 3
), one_sided AS (
    SELECT coalesce(a.other, b.other) AS other, coalesce(a.asset, b.asset) AS asset,
           sum(coalesce(a.amount, b.amount))::bigint AS amount
      FROM my_moves a
      FULL JOIN their_moves b
        ON b.change_id = a.change_id AND b.asset = a.asset AND b.other = a.other
     WHERE a.change_id IS NULL OR b.change_id IS NULL
     GROUP BY 1, 2
)
SELECT coalesce(m.other, t.other) AS other, coalesce(m.asset, t.asset) AS asset,
       coalesce(m.balance, 0) AS mine, coalesce(t.balance, 0) AS theirs
  FROM mine m
  FULL JOIN theirs t ON t.other = m.other AND t.asset = m.asset
  LEFT JOIN one_sided o
    ON o.other = coalesce(m.other, t.other) AND o.asset = coalesce(m.asset, t.asset)
 WHERE coalesce(m.balance, 0) + coalesce(t.balance, 0) <> coalesce(o.amount, 0);

-- Every transaction with entries on an interchange account has its move recorded,
-- for the amount of those entries, and every move its entries.
-- name: audit_interchange_moves
WITH legs AS (
    SELECT e.tx_id, a.asset, split_part(a.address, ':', 2) AS other,
           sum(e.amount)::bigint AS amount
      FROM entries e
      JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
     WHERE e.community_id = $1 AND a.address LIKE 'interchange:%'
     GROUP BY 1, 2, 3
), moves AS (
    SELECT m.tx_id, m.asset, m.counterparty AS other, m.amount
      FROM interchange_moves m WHERE m.community_id = $1
)
SELECT coalesce(t.client_id, '#' || coalesce(l.tx_id, m.tx_id)) AS client_id,
       coalesce(l.asset, m.asset) AS asset, coalesce(l.other, m.other) AS other,
       coalesce(l.amount, 0) AS entries, coalesce(m.amount, 0) AS recorded
  FROM legs l
  FULL JOIN moves m ON m.tx_id = l.tx_id AND m.asset = l.asset AND m.other = l.other
  LEFT JOIN transactions t ON t.community_id = $1 AND t.id = coalesce(l.tx_id, m.tx_id)
 WHERE coalesce(l.amount, 0) <> coalesce(m.amount, 0);

-- No change between two communities exists on one side only: per change and asset,
-- what this side recorded is the opposite of what its counterparty did. (On Citus a
-- change can be seen on one side for the moment its commit takes to reach both
-- workers: service/ledger/audit.py looks again before it reports one.)
-- name: audit_interchange_sides
WITH district AS (
    SELECT c.id FROM communities c
     WHERE c.district_id = (SELECT x.district_id FROM communities x WHERE x.id = $1)
       AND c.id <> $1
), mine AS (
    SELECT m.change_id, m.asset, m.counterparty, sum(m.amount)::bigint AS amount
      FROM interchange_moves m WHERE m.community_id = $1
     GROUP BY 1, 2, 3
), theirs AS (
    SELECT m.change_id, m.asset, m.community_id AS counterparty, sum(m.amount)::bigint AS amount
      FROM interchange_moves m
     WHERE m.community_id IN (SELECT id FROM district) AND m.counterparty = $1
     GROUP BY 1, 2, 3
)
SELECT coalesce(a.change_id, b.change_id) AS change_id, coalesce(a.asset, b.asset) AS asset,
       coalesce(a.counterparty, b.counterparty) AS counterparty,
       coalesce(a.amount, 0) AS mine, coalesce(b.amount, 0) AS theirs
  FROM mine a
  FULL JOIN theirs b
    ON b.change_id = a.change_id AND b.asset = a.asset AND b.counterparty = a.counterparty
 WHERE coalesce(a.amount, 0) <> -coalesce(b.amount, 0);
