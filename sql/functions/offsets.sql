-- Property-fee offsets: the household's yearly use, and an offset created with
-- its ledger write in one statement. Re-applied by `migrate` whenever this file
-- changes.

-- The fen of a household's offsets in `p_year` that still count against its yearly
-- cap: held (and not past expiry: such a hold can no longer be applied) or applied
-- and not reversed. An offset whose ledger transaction is not written yet does not
-- count. Writers call it under the household's lock (offset_create); quotes without.
CREATE OR REPLACE FUNCTION offset_household_used(p_community text, p_household text, p_year text)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(o.offset_fen), 0)::bigint
      FROM offsets o
      JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
     WHERE o.community_id = p_community AND o.household_id = p_household
       AND o.year_key = p_year
       AND ((t.status = 'pending' AND (t.expires_at IS NULL OR t.expires_at > now()))
            OR (t.status = 'posted' AND NOT EXISTS (
                    SELECT 1 FROM transactions r
                     WHERE r.community_id = p_community AND r.reversal_of = t.id)))
$$;

-- The points of a member's offsets with one company in `p_year` that still count
-- against a mandate's yearly ceiling, counted as offset_household_used counts fen.
-- Writers call it under the mandate's lock (offset_create); quotes without.
CREATE OR REPLACE FUNCTION offset_mandate_used(
    p_community text, p_member text, p_company text, p_year text)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(o.points), 0)::bigint
      FROM offsets o
      JOIN transactions t ON t.community_id = o.community_id AND t.client_id = 'offset:' || o.id
     WHERE o.community_id = p_community AND o.member_id = p_member
       AND o.property_company = p_company AND o.year_key = p_year
       AND ((t.status = 'pending' AND (t.expires_at IS NULL OR t.expires_at > now()))
            OR (t.status = 'posted' AND NOT EXISTS (
                    SELECT 1 FROM transactions r
                     WHERE r.community_id = p_community AND r.reversal_of = t.id)))
$$;

-- Creates an offset and writes (or holds) its points, once per id. The service has
-- checked the caps that need no lock, planned the ledger write (`p_ledger`, one
-- write for ledger_write) and passes the household's yearly cap
-- (`p_household_cap_fen`, null for none). outcome:
--   'exists'        the id is taken (by this request or another): nothing written;
--   'household_cap' the yearly cap does not fit `p_offset_fen` on top of `used_fen`;
--   'no_mandate'    `p_mandate` (the offset needs the member's mandate for the
--                   company) and there is none in force;
--   'mandate_bill'  the points exceed the mandate's `mandate_cap` per bill;
--   'mandate_year'  they do not fit its `mandate_cap` per year on top of
--                   `mandate_used` (points);
--   otherwise the ledger's outcome for its transaction ('created', 'insufficient',
--   'not_found', …, with `tx_id`, `expires_at`, `failure` as ledger_write returns
--   them). Only 'created' leaves rows behind: a refusal after the insert deletes
--   the offset again, and the ledger's refusals change nothing, so the statement
--   needs no BEGIN/COMMIT around it for the caller to roll back.
-- `created_at` is the offset's, which is also when a posted transaction was
-- finalized (both are now()).
CREATE OR REPLACE FUNCTION offset_create(
    p_community text, p_id text, p_hash bytea, p_member text, p_household text,
    p_company text, p_bill_fen bigint, p_points bigint, p_fen_per_point bigint,
    p_offset_fen bigint, p_year text, p_hold boolean, p_rule_version integer, p_actor text,
    p_household_cap_fen bigint, p_mandate boolean, p_ledger ledger_write[],
    OUT outcome text, OUT used_fen bigint, OUT created_at timestamptz, OUT tx_id bigint,
    OUT expires_at timestamptz, OUT failure jsonb, OUT mandate_id text,
    OUT mandate_cap bigint, OUT mandate_used bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_per_bill bigint;
    v_per_year bigint;
BEGIN
    -- The offset's key first: a concurrent duplicate waits here, holding nothing.
    INSERT INTO offsets AS o
        (community_id, id, request_hash, member_id, household_id, property_company,
         bill_amount_fen, points, fen_per_point, offset_fen, year_key, hold,
         rule_version, actor)
    VALUES (p_community, p_id, p_hash, p_member, p_household, p_company, p_bill_fen,
            p_points, p_fen_per_point, p_offset_fen, p_year, p_hold, p_rule_version, p_actor)
    ON CONFLICT (community_id, id) DO NOTHING
    RETURNING o.created_at INTO created_at;
    IF NOT FOUND THEN
        outcome := 'exists';
        RETURN;
    END IF;
    -- Serialises the offsets of one household, so its yearly cap is exact. NO KEY
    -- UPDATE does not block adding members (their foreign key takes KEY SHARE). The
    -- offset's foreign key has just proved that the household exists.
    PERFORM 1 FROM households h
      WHERE h.community_id = p_community AND h.id = p_household
        FOR NO KEY UPDATE;
    used_fen := offset_household_used(p_community, p_household, p_year);
    -- The cap of model.check: points ≤ (cap - used) / fen_per_point, rounded down.
    IF p_household_cap_fen IS NOT NULL AND used_fen + p_offset_fen > p_household_cap_fen THEN
        DELETE FROM offsets o WHERE o.community_id = p_community AND o.id = p_id;
        outcome := 'household_cap';
        RETURN;
    END IF;
    -- Then the member's mandate for the company: serialises that member's offsets
    -- with the company (a member who changes household keeps its mandate), and a
    -- PUT or DELETE of it waits for them. Its ceilings are checked here, under it.
    IF p_mandate THEN
        SELECT d.id, d.max_points_per_bill, d.max_points_per_year
          INTO mandate_id, v_per_bill, v_per_year
          FROM mandates d
         WHERE d.community_id = p_community AND d.member_id = p_member
           AND d.property_company = p_company AND d.revoked_at IS NULL
           FOR NO KEY UPDATE;
        IF mandate_id IS NULL THEN
            outcome := 'no_mandate';
        ELSIF p_points > v_per_bill THEN
            outcome := 'mandate_bill';
            mandate_cap := v_per_bill;
        ELSIF v_per_year IS NOT NULL THEN
            mandate_used := offset_mandate_used(p_community, p_member, p_company, p_year);
            IF mandate_used + p_points > v_per_year THEN
                outcome := 'mandate_year';
                mandate_cap := v_per_year;
            END IF;
        END IF;
        IF outcome IS NOT NULL THEN
            DELETE FROM offsets o WHERE o.community_id = p_community AND o.id = p_id;
            RETURN;
        END IF;
        UPDATE offsets o SET mandate_id = offset_create.mandate_id
         WHERE o.community_id = p_community AND o.id = p_id;
    END IF;
    SELECT d.outcome, d.tx_id, d.expires_at, d.failure
      INTO outcome, tx_id, expires_at, failure
      FROM ledger_write(p_community, p_ledger) AS d;
    IF outcome <> 'created' THEN
        DELETE FROM offsets o WHERE o.community_id = p_community AND o.id = p_id;
    END IF;
END
$$;
