-- Reports. The summary reads only entries of member accounts: each is one side of a
-- posting, and its counterparty (the entry at leg # 1) says what kind of flow it
-- was. Times are the transaction's `finalized_at` (when its entries were posted),
-- which all entries of a transaction share, so every window splits whole postings.

-- name: report_flows
-- Net change of member balances per asset and counterparty class in [$2, $3).
SELECT a.asset,
       report_flow(c.member_id, c.address) AS flow,
       coalesce(sum(e.amount), 0)::bigint AS net
  FROM entries e
  JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
  JOIN entries ce ON ce.community_id = e.community_id AND ce.tx_id = e.tx_id
                 AND ce.leg = (e.leg # 1)::smallint
  JOIN accounts c ON c.community_id = ce.community_id AND c.id = ce.account_id
 WHERE e.community_id = $1 AND a.member_id IS NOT NULL
   AND t.finalized_at >= $2 AND t.finalized_at < $3
 GROUP BY 1, 2;

-- name: report_outstanding
-- What members' accounts held (posted) at $2, per asset.
SELECT a.asset, coalesce(sum(e.amount), 0)::bigint AS outstanding
  FROM entries e
  JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
 WHERE e.community_id = $1 AND a.member_id IS NOT NULL AND t.finalized_at < $2
 GROUP BY a.asset;

-- name: report_held
-- What pending transactions hold on members' accounts now, per asset.
SELECT asset, coalesce(sum(held), 0)::bigint AS held
  FROM accounts WHERE community_id = $1 AND member_id IS NOT NULL
 GROUP BY asset;

-- name: report_leaderboard
SELECT s.member_id, m.name, s.earned
  FROM member_stats s
  JOIN members m ON m.community_id = s.community_id AND m.id = s.member_id
 WHERE s.community_id = $1 AND s.period_key = $2 AND s.earned > 0
   AND NOT m.leaderboard_opt_out
 ORDER BY s.earned DESC, s.member_id
 LIMIT $3;

-- name: member_set_leaderboard_opt_out
UPDATE members SET leaderboard_opt_out = $3
 WHERE community_id = $1 AND id = $2
RETURNING id, leaderboard_opt_out;

-- name: report_teams
-- Per team (null: hours without one): the approved hours whose work started in
-- [$2, $3), the minutes and distinct members they credited, and the points the
-- rules posted to members for their `volunteer.approved` events (`vh:<id>:approved`;
-- each transaction the event's record names, less its reversal). $4: the teams a
-- key is limited to, or null for all.
WITH approved AS (
    SELECT h.id, h.team, h.member_id, h.minutes
      FROM volunteer_hours h
     WHERE h.community_id = $1 AND h.status = 'approved'
       AND h.started_at >= $2 AND h.started_at < $3
       AND ($4::text[] IS NULL OR h.team = ANY($4::text[]))
), awarded AS (
    SELECT a.team, sum(e.amount)::bigint AS points
      FROM approved a
      JOIN events ev ON ev.community_id = $1 AND ev.id = 'vh:' || a.id || ':approved'
     CROSS JOIN LATERAL jsonb_array_elements(coalesce(ev.result -> 'decisions', '[]')) d
      JOIN transactions t ON t.community_id = $1 AND t.client_id = d ->> 'transaction_id'
     CROSS JOIN LATERAL (
           SELECT t.id WHERE t.status = 'posted'
           UNION ALL
           SELECT r.id FROM transactions r
            WHERE r.community_id = $1 AND r.reversal_of = t.id AND r.status = 'posted') x
      JOIN entries e ON e.community_id = $1 AND e.tx_id = x.id
      JOIN accounts ac ON ac.community_id = $1 AND ac.id = e.account_id
                      AND ac.member_id IS NOT NULL AND ac.asset = 'points'
     GROUP BY a.team
)
SELECT s.team, s.hours, s.minutes, s.volunteers, coalesce(w.points, 0)::bigint AS points
  FROM (SELECT team, count(*)::bigint AS hours, sum(minutes)::bigint AS minutes,
               count(DISTINCT member_id)::bigint AS volunteers
          FROM approved GROUP BY team) s
  LEFT JOIN awarded w ON w.team IS NOT DISTINCT FROM s.team
 ORDER BY s.team NULLS LAST;

-- name: report_monthly
-- The members' points, per month of the community's time zone $2 ('YYYY-MM') and
-- counterparty class (report_flow, as report_flows), over the whole history;
-- and what members held at the end of each month with a row (every month's net
-- added up in order), so the dashboard's months need this one read.
WITH moved AS (
    SELECT to_char(t.finalized_at AT TIME ZONE $2, 'YYYY-MM') AS period,
           report_flow(c.member_id, c.address) AS flow,
           coalesce(sum(e.amount), 0)::bigint AS net
      FROM entries e
      JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
      JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
      JOIN entries ce ON ce.community_id = e.community_id AND ce.tx_id = e.tx_id
                     AND ce.leg = (e.leg # 1)::smallint
      JOIN accounts c ON c.community_id = ce.community_id AND c.id = ce.account_id
     WHERE e.community_id = $1 AND a.member_id IS NOT NULL AND a.asset = 'points'
     GROUP BY 1, 2
), ends AS (
    SELECT period, (sum(sum(net)) OVER (ORDER BY period))::bigint AS outstanding
      FROM moved GROUP BY period
)
SELECT m.period, m.flow, m.net, e.outstanding
  FROM moved m JOIN ends e USING (period)
 ORDER BY m.period, m.flow;
