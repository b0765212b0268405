-- Rule sets, events and the counters rules read.

-- name: rule_set_insert
INSERT INTO rule_sets (community_id, version, document, source, media_type, effective_from, actor)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, coalesce($5, now()), $6
  FROM rule_sets WHERE community_id = $1
RETURNING version, effective_from, created_at;

-- name: rule_set_versions
SELECT version, document, effective_from, created_at, actor
  FROM rule_sets WHERE community_id = $1 ORDER BY version;

-- name: rule_set_source
SELECT version, source, media_type, effective_from FROM rule_sets
 WHERE community_id = $1 AND version = $2;

-- name: event_insert
INSERT INTO events (community_id, id, type, member_id, occurred_at, attributes, request_hash, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING id;

-- name: event_get
SELECT id, request_hash, result FROM events WHERE community_id = $1 AND id = $2;

-- name: event_set_result
UPDATE events SET result = $3, rule_version = $4 WHERE community_id = $1 AND id = $2;

-- name: member_lock
-- Both accounts of member $2, minutes before points: address order, the order
-- every writer locks in, so that a rule that then posts minutes cannot take the
-- two the other way round from a batch that holds both. Returns the points row.
-- (OFFSET 0 keeps the outer filter from reaching the unnest, which would skip
-- locking the minutes row.)
SELECT b.posted, b.held
  FROM (SELECT u.ord, l.posted, l.held
          FROM unnest(ARRAY['member:' || $2 || ':minutes', 'member:' || $2 || ':points'])
                 WITH ORDINALITY AS u(addr, ord)
         CROSS JOIN LATERAL
               (SELECT a.posted, a.held FROM accounts a
                 WHERE a.community_id = $1 AND a.address = u.addr
                   FOR UPDATE) l
        OFFSET 0) b
 WHERE b.ord = 2;

-- name: rule_usage_get
SELECT rule_id, period_key, amount, times FROM rule_usage
 WHERE community_id = $1 AND member_id = $2 AND period_key = ANY ($3::text[]);

-- name: rule_usage_add
INSERT INTO rule_usage (community_id, member_id, rule_id, period_key, amount, times)
SELECT $1, $2, u.rule_id, u.period_key, u.amount, 1
  FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(rule_id, period_key, amount)
ON CONFLICT (community_id, member_id, rule_id, period_key)
DO UPDATE SET amount = rule_usage.amount + excluded.amount, times = rule_usage.times + 1;

-- name: member_stats_get
SELECT period_key, earned, deducted, deductions, awards FROM member_stats
 WHERE community_id = $1 AND member_id = $2 AND period_key = ANY ($3::text[]);

-- name: member_stats_add
INSERT INTO member_stats (community_id, member_id, period_key, earned, deducted, deductions, awards)
SELECT $1, $2, k, $4, $5, $6, $7 FROM unnest($3::text[]) AS k
ON CONFLICT (community_id, member_id, period_key)
DO UPDATE SET earned = member_stats.earned + excluded.earned,
              deducted = member_stats.deducted + excluded.deducted,
              deductions = member_stats.deductions + excluded.deductions,
              awards = member_stats.awards + excluded.awards;

-- name: job_run_claim
INSERT INTO job_runs (community_id, job, period_key) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING period_key;

-- name: job_run_done
SELECT period_key FROM job_runs WHERE community_id = $1 AND job = $2 AND period_key = ANY ($3::text[]);

-- name: member_ids_page
SELECT id FROM members WHERE community_id = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: expiry_inputs
-- For year-end expiry: what the member earned through rules up to year $3, what
-- left its points account before $4 other than by expiry, and what has expired.
SELECT
    (SELECT coalesce(sum(s.earned), 0)::bigint FROM member_stats s
      WHERE s.community_id = $1 AND s.member_id = $2
        AND s.period_key ~ '^[0-9]{4}$' AND s.period_key <= $3) AS earned,
    coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0 AND t.kind <> 'expiry'
                                    AND e.created_at < $4), 0)::bigint AS spent,
    coalesce(-sum(e.amount) FILTER (WHERE t.kind = 'expiry'), 0)::bigint AS expired
  FROM accounts a
  JOIN entries e ON e.community_id = a.community_id AND e.account_id = a.id
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
 WHERE a.community_id = $1 AND a.address = 'member:' || $2 || ':points';
