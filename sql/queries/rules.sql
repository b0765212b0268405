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
-- The text a version was published as (its YAML comments and layout), for the editor.
SELECT source, media_type FROM rule_sets WHERE community_id = $1 AND version = $2;

-- name: event_begin
-- See rules_event_begin (sql/functions/rules.sql): the event recorded once, then its member
-- locked and its statistics read; or the stored hash and result of an existing id.
SELECT * FROM rules_event_begin($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: event_finish
SELECT rules_event_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);

-- name: member_lock
-- See rules_lock_member (sql/functions/rules.sql): both accounts of member $2 locked,
-- minutes before points; the points account's posted and held, and the member's
-- statistics at the period keys $3.
SELECT * FROM rules_lock_member($1, $2, $3);

-- name: member_stats_get
SELECT rules_member_stats($1, $2, $3);

-- name: rules_count
SELECT rules_count($1, $2, $3, $4, $5, $6, $7, $8);

-- name: job_run_claim
INSERT INTO job_runs (community_id, job, period_key) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING period_key;

-- name: job_run_done
SELECT period_key FROM job_runs WHERE community_id = $1 AND job = $2 AND period_key = ANY ($3::text[]);

-- name: member_ids_page
-- The members scheduled rules and expiry visit: not those who moved out, whose
-- closed accounts take nothing more (sql/functions/setup.sql).
SELECT id FROM members
 WHERE community_id = $1 AND id > $2 AND closed_at IS NULL
 ORDER BY id LIMIT $3;

-- name: event_counted
-- What an event's reversals need to know of it: when it occurred, and its record
-- (which rules posted which transactions).
SELECT occurred_at, result FROM events WHERE community_id = $1 AND id = $2;

-- name: rules_reverse
-- See rules_reverse (sql/functions/rules.sql): the reversal written, and what the
-- reversed transaction counted taken out of the statistics when it is created.
SELECT * FROM rules_reverse($1, ledger_writes($2::text::jsonb), $3, $4, $5, $6, $7, $8, $9, $10);

-- name: lots_due
-- The member accounts of community $1 with lots that reached their instant by $2
-- and still hold something (members who moved out take nothing more).
SELECT DISTINCT m.id AS member_id, a.asset
  FROM lots l
  JOIN accounts a ON a.community_id = l.community_id AND a.id = l.account_id
  JOIN members m ON m.community_id = a.community_id AND m.id = a.member_id
 WHERE l.community_id = $1 AND l.expires_at <= $2 AND l.remaining > l.held
   AND l.expires_at IS NOT NULL AND m.closed_at IS NULL
 ORDER BY 1, 2;

-- name: lots_due_of
-- Under the account's lock: per instant reached by $3, earliest first, what the
-- lots of account $2 at it still hold, and how many expiry transactions that
-- instant already has (a lot given back after it expired expires again): the
-- first is `expiry:<asset>:<instant>:<member>`, the nth adds `:<n>`; they are
-- counted by probing the client ids one by one on the unique index, so a member
-- id that another begins with, or one with `_` or `%` in it, counts only its own.
SELECT d.expires_at, d.amount,
       (WITH RECURSIVE r(n) AS (
            SELECT 1 WHERE EXISTS (
                SELECT 1 FROM transactions t WHERE t.community_id = $1 AND t.client_id = d.key)
            UNION ALL
            SELECT r.n + 1 FROM r WHERE EXISTS (
                SELECT 1 FROM transactions t
                 WHERE t.community_id = $1 AND t.client_id = d.key || ':' || (r.n + 1)))
        SELECT count(*) FROM r) AS rounds
  FROM (SELECT l.expires_at, sum(l.remaining - l.held)::bigint AS amount,
               'expiry:' || a.asset || ':'
               || to_char(l.expires_at AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')
               || ':' || a.member_id AS key
          FROM lots l
          JOIN accounts a ON a.community_id = l.community_id AND a.id = l.account_id
         WHERE l.community_id = $1 AND a.address = $2 AND l.expires_at <= $3
           AND l.remaining > l.held
         GROUP BY l.expires_at, a.asset, a.member_id) d
 ORDER BY d.expires_at;

-- name: replay_events
-- What `POST …/rules/simulate` replays (service/rules/replay.py): the events of
-- community $1 that occurred in [$2, $3), in the order they were recorded, at most
-- $4. With each, its member's name, the member-side entries of the transactions its
-- rules posted (`postings`: rule, asset, signed amount, whether a reversal took it
-- back since), and the member's posted points balance just before the event: before
-- its first points entry, or, when it posted no points, after the last entry written
-- before the event was recorded. Transactions are found by the ids the event's record
-- names (the unique client id index), entries by the account index; the events
-- themselves by the community's part of the primary key (no index on occurred_at).
-- (The reversal's EXISTS reads `r.community_id = $1`, not `= t.community_id`, the
-- same value: Citus does not see that a subquery correlated on the lateral's row
-- stays in one shard, and refuses the query with "complex joins are only supported
-- when all distributed tables are co-located…".)
SELECT ev.id, ev.type, ev.member_id, ev.occurred_at, ev.attributes, ev.rule_version,
       m.name, own.postings,
       coalesce((SELECT b.balance_after
                   FROM entries b
                  WHERE b.community_id = $1 AND b.account_id = pa.id
                    AND CASE WHEN own.first_seq IS NULL THEN b.created_at < ev.created_at
                             ELSE b.seq < own.first_seq END
                  ORDER BY b.seq DESC
                  LIMIT 1), 0)::bigint AS balance_before
  FROM events ev
  JOIN members m ON m.community_id = ev.community_id AND m.id = ev.member_id
  JOIN accounts pa ON pa.community_id = ev.community_id
                  AND pa.address = 'member:' || ev.member_id || ':points'
 CROSS JOIN LATERAL (
       SELECT coalesce(jsonb_agg(jsonb_build_object(
                  'rule_id', t.rule_id,
                  'asset', a.asset,
                  'amount', e.amount,
                  'reversed', EXISTS (SELECT 1 FROM transactions r
                                       WHERE r.community_id = $1
                                         AND r.reversal_of = t.id)) ORDER BY e.seq),
                  '[]'::jsonb) AS postings,
              min(e.seq) FILTER (WHERE a.asset = 'points') AS first_seq
         FROM transactions t
         JOIN entries e ON e.community_id = t.community_id AND e.tx_id = t.id
         JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
        WHERE t.community_id = $1 AND t.reversal_of IS NULL AND t.rule_id IS NOT NULL
          AND a.member_id = ev.member_id
          AND t.client_id IN (SELECT d ->> 'transaction_id'
                                FROM jsonb_array_elements(ev.result -> 'decisions') d)) own
 WHERE ev.community_id = $1 AND ev.occurred_at >= $2 AND ev.occurred_at < $3
 ORDER BY ev.created_at, ev.id
 LIMIT $4;

-- name: replay_stats
-- The statistics and rule usage of members $2 at the period keys $3, as stored now
-- (`rule_id` is null for a member_stats row; a usage row's `amount` is in `earned`
-- and its `times` in `awards`).
SELECT member_id, NULL::text AS rule_id, period_key, earned, deducted, awards, deductions
  FROM member_stats
 WHERE community_id = $1 AND member_id = ANY ($2::text[]) AND period_key = ANY ($3::text[])
UNION ALL
SELECT member_id, rule_id, period_key, amount, 0, times, 0
  FROM rule_usage
 WHERE community_id = $1 AND member_id = ANY ($2::text[]) AND period_key = ANY ($3::text[]);
