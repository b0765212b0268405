-- Webhook endpoints, their deliveries, and the jobs that emit scheduled events.

-- name: webhook_insert
INSERT INTO webhooks AS w
       (community_id, id, url, events, description, secret, property_company, store,
        request_hash, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING w.*;

-- name: webhook_get
SELECT * FROM webhooks WHERE community_id = $1 AND id = $2;

-- name: webhook_list
-- Live endpoints after the cursor's id, within the key's scope ($3, $4: null for
-- an operator's key).
SELECT * FROM webhooks
 WHERE community_id = $1 AND deleted_at IS NULL AND id > $2
   AND ($3::text IS NULL OR property_company = $3)
   AND ($4::text IS NULL OR store = $4)
 ORDER BY id
 LIMIT $5;

-- name: webhook_delete
-- The endpoint stops receiving; what was still to be delivered to it fails.
WITH gone AS (
    UPDATE webhooks SET deleted_at = now()
     WHERE community_id = $1 AND id = $2 AND deleted_at IS NULL
    RETURNING id
)
UPDATE webhook_deliveries d
   SET status = 'failed', last_error = 'the endpoint was deleted', leased_until = NULL
  FROM gone
 WHERE d.community_id = $1 AND d.webhook_id = gone.id AND d.status = 'pending';

-- name: delivery_list
-- An endpoint's deliveries, newest event first, after the cursor's seq.
SELECT d.*, e.id AS event_id, e.type AS event_type
  FROM webhook_deliveries d
  JOIN outbox_events e ON e.community_id = d.community_id AND e.seq = d.event_seq
 WHERE d.community_id = $1 AND d.webhook_id = $2
   AND ($3::text IS NULL OR d.status = $3) AND d.event_seq < $4
 ORDER BY d.event_seq DESC
 LIMIT $5;

-- name: delivery_get
SELECT d.*, e.id AS event_id, e.type AS event_type
  FROM webhook_deliveries d
  JOIN outbox_events e ON e.community_id = d.community_id AND e.seq = d.event_seq
 WHERE d.community_id = $1 AND d.webhook_id = $2 AND d.id = $3;

-- name: delivery_retry
-- A delivery (delivered or failed too) is attempted again now, with a fresh
-- schedule of retries.
UPDATE webhook_deliveries
   SET status = 'pending', attempts = 0, next_attempt_at = now(), leased_until = NULL
 WHERE community_id = $1 AND webhook_id = $2 AND id = $3
   AND status <> 'pending'
RETURNING id;

-- name: delivery_claim
-- Takes the due deliveries of up to $1 endpoints, at most $3 each, lowest seq first,
-- leased for $2 seconds; none of an endpoint with an attempt under way. Events wait
-- until every transaction older than theirs has ended (as the sealer does), so that
-- an event with a lower seq is not overtaken by one committed before it. SKIP
-- LOCKED: replicas claiming at once take different endpoints' deliveries. Per
-- endpoint it reads only its first $3 due deliveries and its leased ones (the
-- partial indexes of 0008_webhook_claims.sql), however long its backlog.
WITH endpoints AS (
    SELECT w.community_id, w.id AS webhook_id
      FROM webhooks w
     WHERE EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.community_id = w.community_id AND d.webhook_id = w.id
                      AND d.status = 'pending' AND d.next_attempt_at <= now())
       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                        WHERE x.community_id = w.community_id AND x.webhook_id = w.id
                          AND x.status = 'pending' AND x.leased_until IS NOT NULL
                          AND x.leased_until > now())
     ORDER BY w.community_id, w.id
     LIMIT $1
), due AS (
    SELECT d.community_id, d.id
      FROM endpoints p
     CROSS JOIN LATERAL (
           SELECT d.community_id, d.id
             FROM webhook_deliveries d
             JOIN outbox_events e ON e.community_id = d.community_id AND e.seq = d.event_seq
            WHERE d.community_id = p.community_id AND d.webhook_id = p.webhook_id
              AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY d.event_seq
            LIMIT $3) d
), claimed AS (
    SELECT d.community_id, d.id FROM webhook_deliveries d
     WHERE (d.community_id, d.id) IN (SELECT due.community_id, due.id FROM due)
       AND d.status = 'pending'
       FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET leased_until = now() + make_interval(secs => $2), attempts = d.attempts + 1,
       last_attempt_at = now()
  FROM claimed c, outbox_events e, webhooks w
 WHERE d.community_id = c.community_id AND d.id = c.id
   AND e.community_id = d.community_id AND e.seq = d.event_seq
   AND w.community_id = d.community_id AND w.id = d.webhook_id
RETURNING d.community_id, d.id, d.webhook_id, d.attempts, e.id AS event_id, e.type,
          e.seq, e.occurred_at, e.data, w.url, w.secret;

-- name: delivery_due_communities
-- On Citus (where `delivery_claim` is refused, see webhook_claim in
-- sql/citus/distribute.sql): the communities with due deliveries, at most $1.
SELECT DISTINCT community_id
  FROM webhook_deliveries
 WHERE status = 'pending' AND next_attempt_at <= now()
 ORDER BY community_id
 LIMIT $1;

-- name: delivery_claim_of
-- On Citus: `delivery_claim` for community $1 alone, on the worker that holds it
-- (webhook_claim, sql/functions/webhooks.sql).
SELECT community_id, id, webhook_id, attempts, event_id, type, seq, occurred_at, data,
       url, secret
  FROM webhook_claim($1, $2, $3, $4);

-- name: delivery_release
-- Claimed deliveries left unattempted because their endpoint's earlier one just
-- failed: due again after a pause of $3 seconds (so that an endpoint that is down
-- is not sent its whole backlog at once), their claim not counted as an attempt.
UPDATE webhook_deliveries
   SET leased_until = NULL, attempts = attempts - 1,
       next_attempt_at = now() + make_interval(secs => $3)
 WHERE community_id = $1 AND id = ANY ($2::text[]) AND status = 'pending';

-- name: delivery_succeeded
UPDATE webhook_deliveries
   SET status = 'delivered', delivered_at = now(), leased_until = NULL,
       last_status = $3, last_error = NULL
 WHERE community_id = $1 AND id = $2 AND status = 'pending';

-- name: delivery_attempt_failed
-- $5: seconds until the next attempt; null: that was the last one.
UPDATE webhook_deliveries
   SET status = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END,
       next_attempt_at = now() + make_interval(secs => coalesce($5::float8, 0)),
       leased_until = NULL, last_status = $3, last_error = $4
 WHERE community_id = $1 AND id = $2 AND status = 'pending';

-- name: webhook_emit
-- $2: the events as a JSON array of [type, data, property_company, store] (asyncpg
-- cannot send a composite type with a jsonb field).
-- (Through webhook_events, not a subquery: Citus delegates a call to the worker of
-- the community only when no argument is a subquery.)
SELECT webhook_emit($1, webhook_events($2::jsonb));

-- name: webhook_listening
-- The communities with a live endpoint subscribed to event type $1.
SELECT DISTINCT community_id FROM webhooks WHERE deleted_at IS NULL AND $1 = ANY (events);

-- name: webhook_claim_slot
-- A scheduled event's slot (`job_runs`), claimed once however many processes try.
INSERT INTO job_runs (community_id, job, period_key) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING 1;

-- name: points_expiring
-- What of each member's points lots expires at each instant within the notice
-- period ($2, $3: now and now + notice), less what is held.
SELECT a.member_id, l.expires_at, sum(l.remaining - l.held)::bigint AS amount,
       h.property_company
  FROM lots l
  JOIN accounts a ON a.community_id = l.community_id AND a.id = l.account_id
  JOIN members m ON m.community_id = a.community_id AND m.id = a.member_id
  JOIN households h ON h.community_id = m.community_id AND h.id = m.household_id
 WHERE l.community_id = $1 AND a.asset = 'points' AND l.remaining > l.held
   AND l.expires_at > $2 AND l.expires_at <= $3
 GROUP BY a.member_id, l.expires_at, h.property_company
 ORDER BY a.member_id, l.expires_at;

-- name: audit_head
-- The latest sealed position of a community's hash chain.
SELECT h.seq, encode(h.hash, 'hex') AS head, s.sealed_at
  FROM chain_heads h
  LEFT JOIN seals s ON s.community_id = h.community_id AND s.seq = h.seq
 WHERE h.community_id = $1;
