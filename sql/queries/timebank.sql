-- Volunteer hours.

-- name: hours_insert
INSERT INTO volunteer_hours AS h
    (community_id, id, member_id, activity, started_at, minutes, organiser, status,
     request_hash, actor, decided_at, decided_by, team, approvals_needed, member_community)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
        CASE WHEN $8 = 'approved' THEN now() END, CASE WHEN $8 = 'approved' THEN $10 END,
        $11, $12, $13)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING h.*;

-- name: hours_get
-- The hours and their approvals (parallel arrays, in the order they were given).
SELECT h.*, a.approval_keys, a.approval_times
  FROM volunteer_hours h
  CROSS JOIN LATERAL hours_approvals_of(h.community_id, h.id) a
 WHERE h.community_id = $1 AND h.id = $2;

-- name: hours_lock
SELECT * FROM volunteer_hours WHERE community_id = $1 AND id = $2 FOR UPDATE;

-- name: hours_decide
UPDATE volunteer_hours
   SET status = $3, decided_at = now(), decided_by = $4
 WHERE community_id = $1 AND id = $2
RETURNING *;

-- name: hours_approval_add
-- Key $3's approval of hours $2 (whose row the caller holds locked); no row when
-- that key had already approved them. At the clock, not the transaction's start:
-- approvals are written one at a time under the lock, so their times keep its order.
INSERT INTO hours_approvals (community_id, hours_id, key_id, approved_at)
VALUES ($1, $2, $3, clock_timestamp())
ON CONFLICT (community_id, hours_id, key_id) DO NOTHING
RETURNING key_id;

-- name: hours_approvals
SELECT key_id, approved_at
  FROM hours_approvals
 WHERE community_id = $1 AND hours_id = $2
 ORDER BY approved_at, key_id;

-- name: hours_page
-- The queue: one page of hours, oldest first by (created_at, id). $2: the statuses
-- listed; $3: one team or null; $4: the teams a key is limited to, or null for
-- all (hours without a team are then left out); $5: one member or null; $6, $7:
-- the last hours of the previous page, null for the first; $8: the page's size
-- plus one.
SELECT h.*, a.approval_keys, a.approval_times
  FROM volunteer_hours h
  CROSS JOIN LATERAL hours_approvals_of(h.community_id, h.id) a
 WHERE h.community_id = $1
   AND h.status = ANY($2::text[])
   AND ($3::text IS NULL OR h.team = $3)
   AND ($4::text[] IS NULL OR h.team = ANY($4::text[]))
   AND ($5::text IS NULL OR h.member_id = $5)
   AND ($6::timestamptz IS NULL OR (h.created_at, h.id) > ($6::timestamptz, $7::text))
 ORDER BY h.created_at, h.id
 LIMIT $8;
