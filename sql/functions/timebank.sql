-- The time bank's functions. Re-applied by `migrate` whenever this file changes.

-- The approvals of volunteer hours `p_hours` as parallel arrays, in the order they
-- were given (empty when none): what every read of hours returns with its row.
CREATE OR REPLACE FUNCTION hours_approvals_of(
    p_community text, p_hours text, OUT approval_keys text[], OUT approval_times timestamptz[])
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(x.key_id ORDER BY x.approved_at, x.key_id), '{}'),
           coalesce(array_agg(x.approved_at ORDER BY x.approved_at, x.key_id), '{}')
      FROM hours_approvals x
     WHERE x.community_id = p_community AND x.hours_id = p_hours
$$;
