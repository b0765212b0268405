-- The rules engine's functions: an event's record, its member locked and its
-- statistics read, then what it posted counted. Re-applied by `migrate`
-- whenever this file changes.
--
-- Each statement of a PL/pgSQL function takes a fresh snapshot, so statistics
-- read after a lock are the ones the lock protects (one plain SQL statement
-- would read them as of before its lock wait).

-- A published rule set never changes.
CREATE OR REPLACE TRIGGER rule_sets_immutable BEFORE UPDATE OR DELETE ON rule_sets
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- A plain read: callers that decide on it lock the member first (rules_lock_member).
CREATE OR REPLACE FUNCTION rules_member_stats(p_community text, p_member text, p_keys text[])
RETURNS rules_stats
LANGUAGE sql STABLE AS $$
    SELECT ROW(s.*, u.*)::rules_stats
      FROM (SELECT coalesce(array_agg(m.period_key), '{}'), coalesce(array_agg(m.earned), '{}'),
                   coalesce(array_agg(m.deducted), '{}'), coalesce(array_agg(m.awards), '{}'),
                   coalesce(array_agg(m.deductions), '{}')
              FROM member_stats m
             WHERE m.community_id = p_community AND m.member_id = p_member
               AND m.period_key = ANY (p_keys)) s,
           (SELECT coalesce(array_agg(r.rule_id), '{}'), coalesce(array_agg(r.period_key), '{}'),
                   coalesce(array_agg(r.amount), '{}'), coalesce(array_agg(r.times), '{}')
              FROM rule_usage r
             WHERE r.community_id = p_community AND r.member_id = p_member
               AND r.period_key = ANY (p_keys)) u
$$;

-- Locks both accounts of a member until the transaction ends, minutes before
-- points (address order, the order every writer locks in, so that a rule that then
-- posts minutes cannot take the two the other way round from a batch that holds
-- both), then reads its statistics. `posted` and `held` are the points account's;
-- all NULL when there is no such member.
CREATE OR REPLACE FUNCTION rules_lock_member(
    p_community text, p_member text, p_keys text[],
    OUT posted bigint, OUT held bigint, OUT stats rules_stats)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM accounts a
      WHERE a.community_id = p_community AND a.address = 'member:' || p_member || ':minutes'
        FOR UPDATE;
    SELECT a.posted, a.held INTO posted, held FROM accounts a
     WHERE a.community_id = p_community AND a.address = 'member:' || p_member || ':points'
       FOR UPDATE;
    IF FOUND THEN
        stats := rules_member_stats(p_community, p_member, p_keys);
    END IF;
END
$$;

-- Records an event once per id and, when it is new, locks its member and reads the
-- statistics the rules may use (rules_lock_member). When the id exists, `inserted`
-- is false and the stored request hash and result come back instead (the caller
-- answers with them or refuses a different request). A member that does not exist
-- fails the event's foreign key.
CREATE OR REPLACE FUNCTION rules_event_begin(
    p_community text, p_id text, p_type text, p_member text, p_occurred_at timestamptz,
    p_attributes jsonb, p_request_hash bytea, p_actor text, p_keys text[],
    OUT inserted boolean, OUT stored_hash bytea, OUT stored_result jsonb,
    OUT posted bigint, OUT held bigint, OUT stats rules_stats)
LANGUAGE plpgsql AS $$
DECLARE
    v_locked record;
BEGIN
    INSERT INTO events (community_id, id, type, member_id, occurred_at, attributes,
                        request_hash, actor)
    VALUES (p_community, p_id, p_type, p_member, p_occurred_at, p_attributes,
            p_request_hash, p_actor)
    ON CONFLICT (community_id, id) DO NOTHING;
    inserted := FOUND;
    IF NOT inserted THEN
        SELECT e.request_hash, e.result INTO stored_hash, stored_result
          FROM events e WHERE e.community_id = p_community AND e.id = p_id;
        RETURN;
    END IF;
    SELECT * INTO v_locked FROM rules_lock_member(p_community, p_member, p_keys);
    posted := v_locked.posted;
    held := v_locked.held;
    stats := v_locked.stats;
END
$$;

-- Advances what rules posted to a member: each rule's usage in its period, and the
-- member's points earned and deducted at the period keys `p_stat_keys`.
CREATE OR REPLACE FUNCTION rules_count(
    p_community text, p_member text,
    p_rule_ids text[], p_period_keys text[], p_amounts bigint[],
    p_stat_keys text[], p_earned bigint, p_deducted bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_rule_ids) > 0 THEN
        INSERT INTO rule_usage (community_id, member_id, rule_id, period_key, amount, times)
        SELECT p_community, p_member, u.rule_id, u.period_key, u.amount, 1
          FROM unnest(p_rule_ids, p_period_keys, p_amounts) AS u(rule_id, period_key, amount)
        ON CONFLICT (community_id, member_id, rule_id, period_key)
        DO UPDATE SET amount = rule_usage.amount + excluded.amount,
                      times = rule_usage.times + 1;
    END IF;
    IF p_earned > 0 OR p_deducted > 0 THEN
        INSERT INTO member_stats (community_id, member_id, period_key, earned, deducted,
                                  deductions, awards)
        SELECT p_community, p_member, k, p_earned, p_deducted,
               CASE WHEN p_deducted > 0 THEN 1 ELSE 0 END,
               CASE WHEN p_earned > 0 THEN 1 ELSE 0 END
          FROM unnest(p_stat_keys) AS k
        ON CONFLICT (community_id, member_id, period_key)
        DO UPDATE SET earned = member_stats.earned + excluded.earned,
                      deducted = member_stats.deducted + excluded.deducted,
                      deductions = member_stats.deductions + excluded.deductions,
                      awards = member_stats.awards + excluded.awards;
    END IF;
END
$$;

-- What an event posted, counted (rules_count), and its result stored for replays.
CREATE OR REPLACE FUNCTION rules_event_finish(
    p_community text, p_id text, p_member text, p_result jsonb, p_rule_version integer,
    p_rule_ids text[], p_period_keys text[], p_amounts bigint[],
    p_stat_keys text[], p_earned bigint, p_deducted bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rules_count(p_community, p_member, p_rule_ids, p_period_keys, p_amounts,
                        p_stat_keys, p_earned, p_deducted);
    UPDATE events e SET result = p_result, rule_version = p_rule_version
     WHERE e.community_id = p_community AND e.id = p_id;
END
$$;

-- Writes the reversal of a transaction a rule posted (`p_ledger`, one write for
-- ledger_write) and, only when that write creates it, takes what the transaction
-- counted back out (what rules_count added): `p_amount` and one time from the rule's
-- usage in `p_period_key`, and for points `p_earned` or `p_deducted` from the
-- member's statistics at `p_stat_keys`. A replay (the reversal exists) or a refusal
-- subtracts nothing, so a reversal is uncounted once however often it is asked for.
-- The ledger takes the member's account lock before this function touches a
-- statistics row, the order every writer of them keeps. One event counts one award
-- (and one deduction) however many of its rules posted: the event leaves `awards`
-- only when none of `p_siblings` (its other transactions of the same kind, points)
-- still stands. Their reversals take the same lock, so the count read here is exact.
-- Returns the ledger's row for the write.
CREATE OR REPLACE FUNCTION rules_reverse(
    p_community text, p_ledger ledger_write[], p_member text, p_rule_id text,
    p_period_key text, p_amount bigint, p_stat_keys text[], p_earned bigint,
    p_deducted bigint, p_siblings text[])
RETURNS ledger_written
LANGUAGE plpgsql AS $$
DECLARE
    r ledger_written;
    v_last integer;
BEGIN
    SELECT * INTO r FROM ledger_write(p_community, p_ledger);
    IF r.outcome <> 'created' THEN
        RETURN r;
    END IF;
    UPDATE rule_usage u SET amount = u.amount - p_amount, times = u.times - 1
     WHERE u.community_id = p_community AND u.member_id = p_member
       AND u.rule_id = p_rule_id AND u.period_key = p_period_key;
    IF p_earned = 0 AND p_deducted = 0 THEN
        RETURN r;
    END IF;
    SELECT CASE WHEN count(*) = 0 THEN 1 ELSE 0 END INTO v_last
      FROM transactions t
     WHERE t.community_id = p_community AND t.client_id = ANY (p_siblings)
       AND NOT EXISTS (SELECT 1 FROM transactions x
                        WHERE x.community_id = p_community AND x.reversal_of = t.id);
    UPDATE member_stats s
       SET earned = s.earned - p_earned,
           deducted = s.deducted - p_deducted,
           awards = s.awards - CASE WHEN p_earned > 0 THEN v_last ELSE 0 END,
           deductions = s.deductions - CASE WHEN p_deducted > 0 THEN v_last ELSE 0 END
     WHERE s.community_id = p_community AND s.member_id = p_member
       AND s.period_key = ANY (p_stat_keys);
    RETURN r;
END
$$;
