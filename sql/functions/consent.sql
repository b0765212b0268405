-- Consent: the count of PIN tries. Re-applied by `migrate` whenever this file changes.

-- Reserves one try before the PIN is checked (sql/queries/consent.sql, `pin_attempt`),
-- so that tries racing on any number of workers are counted: the fifth within a
-- lock's reach (`p_tries`) locks for `p_lock_s` seconds; while locked nothing comes
-- back. A member id that does not exist (or has no PIN) is counted the same way, so
-- the answers never tell them apart. One row, the stored hash (null: no PIN), or
-- none while locked.
--
-- A function rather than one statement for Citus (docs/scaling.md): the statement
-- read now() in its ON CONFLICT DO UPDATE, and Citus takes only IMMUTABLE functions
-- there ("functions used in the DO UPDATE SET clause of INSERTs on distributed
-- tables must be marked IMMUTABLE"), even on the worker. Here the instant and the
-- end of a lock are computed first and are parameters of the statement (now() is
-- the transaction's start, the same value everywhere in it). Distributed by
-- `p_community`, the call runs on the worker that holds the community.
CREATE OR REPLACE FUNCTION pin_attempt(p_community text, p_member text, p_tries integer,
                                       p_lock_s double precision)
RETURNS TABLE (pin_hash text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now   CONSTANT timestamptz := now();
    v_until CONSTANT timestamptz := now() + make_interval(secs => p_lock_s);
BEGIN
    RETURN QUERY
    INSERT INTO member_pins AS p (community_id, member_id, failures)
    VALUES (p_community, p_member, 1)
    ON CONFLICT (community_id, member_id) DO UPDATE
       SET failures = CASE WHEN p.locked_until <= v_now THEN 1 ELSE p.failures + 1 END,
           locked_until = CASE
               WHEN (CASE WHEN p.locked_until <= v_now THEN 1 ELSE p.failures + 1 END) >= p_tries
               THEN v_until END
     WHERE p.locked_until IS NULL OR p.locked_until <= v_now
    RETURNING p.pin_hash;
END
$$;
