-- Volunteer hours.

-- name: hours_insert
INSERT INTO volunteer_hours AS h
    (community_id, id, member_id, activity, started_at, minutes, organiser, status,
     request_hash, actor, decided_at, decided_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
        CASE WHEN $8 = 'approved' THEN now() END, CASE WHEN $8 = 'approved' THEN $10 END)
ON CONFLICT (community_id, id) DO NOTHING
RETURNING h.*;

-- name: hours_get
SELECT * FROM volunteer_hours WHERE community_id = $1 AND id = $2;

-- name: hours_lock
SELECT * FROM volunteer_hours WHERE community_id = $1 AND id = $2 FOR UPDATE;

-- name: hours_decide
UPDATE volunteer_hours
   SET status = $3, decided_at = now(), decided_by = $4
 WHERE community_id = $1 AND id = $2
RETURNING *;
