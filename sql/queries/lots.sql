-- Reading lots (SPEC section 9): a member's lots in the order debits consume them,
-- what is about to expire, and the scheme's totals the summary reports. The write
-- engine that keeps the lots is sql/functions/ledger.sql (`ledger_lots`).

-- name: lots_page
-- One page of an account's lots in consumption order: soonest `expires_at` first,
-- non-expiring last, then oldest `earned_at`, then lowest id. The keyset compares
-- `(expires_at IS NULL, expires_at, earned_at, id)` so that the never-expiring lots
-- (null) sort after every instant; `epoch` stands in for their null, which a row
-- comparison would otherwise make unknown. $3: open lots only (remaining > 0);
-- $4 … $6: the last lot of the previous page (id, expires_at, earned_at), $4 null
-- for the first page.
SELECT l.id, t.client_id AS transaction_id, l.earned_at, l.amount, l.remaining, l.expires_at
  FROM lots l
  JOIN transactions t ON t.community_id = l.community_id AND t.id = l.transaction_id
 WHERE l.community_id = $1
   AND l.account_id = (SELECT a.id FROM accounts a WHERE a.community_id = $1 AND a.address = $2)
   AND (l.remaining > 0 OR NOT $3::boolean)
   AND ($4::bigint IS NULL
        OR (l.expires_at IS NULL, coalesce(l.expires_at, 'epoch'), l.earned_at, l.id)
         > ($5::timestamptz IS NULL, coalesce($5::timestamptz, 'epoch'), $6::timestamptz, $4))
 ORDER BY l.expires_at NULLS LAST, l.earned_at, l.id
 LIMIT $7;

-- name: member_balances_expiring
-- The member balance and, per account, the next three instants at which its open
-- lots expire with what would expire then (`remaining - held`: what a pending debit
-- holds is spent when it posts, not expired), instants where nothing would left out.
-- One row per instant (the balance repeated), or one row with a null instant: a
-- balance read stays one round trip. An instant already past is still listed: its
-- lots expire at the next expiry run.
SELECT a.asset, a.posted, a.held, x.expires_at, x.amount
  FROM accounts a
  LEFT JOIN LATERAL (
        SELECT l.expires_at, sum(l.remaining - l.held)::bigint AS amount
          FROM lots l
         WHERE l.community_id = $1 AND l.account_id = a.id
           AND l.remaining > 0 AND l.expires_at IS NOT NULL
         GROUP BY l.expires_at
        HAVING sum(l.remaining - l.held) > 0
         ORDER BY l.expires_at
         LIMIT 3) x ON true
 WHERE a.community_id = $1 AND a.address = ANY ($2::text[])
 ORDER BY a.asset, x.expires_at;

-- name: report_liability
-- What the members who have not moved out could redeem now, per asset: points above
-- the baseline $2 and not held (a member's `redeemable`), minutes not held. Closed
-- members are left out: their accounts refuse every change, so nothing on them can
-- be redeemed.
SELECT a.asset,
       coalesce(sum(greatest(0, a.posted - a.held
                                - CASE WHEN a.asset = 'points' THEN $2::bigint ELSE 0 END)),
                0)::bigint AS redeemable
  FROM accounts a
 WHERE a.community_id = $1 AND a.member_id IS NOT NULL AND a.closed_at IS NULL
 GROUP BY a.asset;

-- name: report_expiring
-- What would expire in ($2, $3], per asset: the open lots' `remaining - held` of
-- members who have not moved out.
SELECT a.asset, coalesce(sum(l.remaining - l.held), 0)::bigint AS expiring
  FROM lots l
  JOIN accounts a ON a.community_id = l.community_id AND a.id = l.account_id
 WHERE l.community_id = $1 AND l.remaining > 0 AND l.expires_at > $2 AND l.expires_at <= $3
   AND a.closed_at IS NULL
 GROUP BY a.asset;
