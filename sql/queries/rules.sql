-- Rule sets, events and the counters rules read.

-- name: rule_set_insert
INSERT INTO rule_sets (community_id, version, document, source, media_type, effective_from, actor)
SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, coalesce($5, now()), $6
  FROM rule_sets WHERE community_id = $1
RETURNING version, effective_from, created_at;

-- name: rule_set_versions
SELECT version, document, effective_from, created_at, actor
  FROM rule_sets WHERE community_id = $1 ORDER BY version;

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

-- name: expiry_inputs
-- For year-end expiry: what the member earned through rules up to year $3, what
-- left its points account before $4 other than by expiry, and what has expired.
-- The reversal of an award that took it out of `earned` (marked `uncounted`) is not
-- spending as well.
SELECT
    (SELECT coalesce(sum(s.earned), 0)::bigint FROM member_stats s
      WHERE s.community_id = $1 AND s.member_id = $2
        AND s.period_key ~ '^[0-9]{4}$' AND s.period_key <= $3) AS earned,
    coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0 AND t.kind <> 'expiry'
                                    AND e.created_at < $4
                                    AND NOT (t.kind = 'reversal' AND t.metadata ? 'uncounted')),
             0)::bigint AS spent,
    coalesce(-sum(e.amount) FILTER (WHERE t.kind = 'expiry'), 0)::bigint AS expired
  FROM accounts a
  JOIN entries e ON e.community_id = a.community_id AND e.account_id = a.id
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
 WHERE a.community_id = $1 AND a.address = 'member:' || $2 || ':points';

-- name: event_counted
-- What an event's reversals need to know of it: when it occurred, and its record
-- (which rules posted which transactions).
SELECT occurred_at, result FROM events WHERE community_id = $1 AND id = $2;

-- name: rules_reverse
-- See rules_reverse (sql/functions/rules.sql): the reversal written, and what the
-- reversed transaction counted taken out of the statistics when it is created.
SELECT * FROM rules_reverse($1, ledger_writes($2::text::jsonb), $3, $4, $5, $6, $7, $8, $9, $10);
