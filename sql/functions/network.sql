-- A district network (SPEC section 16; docs/network.md): changes that span two
-- communities. Each is one database transaction that writes a balanced ledger
-- transaction in each community, through the mirrored accounts
-- `interchange:<other>:<asset>`, and records what moved in `interchange_moves`
-- on both sides, derived from those transactions' own entries.
--
-- Lock order across communities: a change first takes the locks of its own kind
-- exactly as the same change within one community does (a redemption: the items
-- in sku order, then the spend code, then the member accounts; a return: the
-- redemption's row first), and the ledger writes of the two sides then lock their
-- member accounts community by community, in byte order of the community id
-- (COLLATE "C"), each in the ledger's own order. Nothing locks items, codes or
-- redemptions after a member account, so two changes can never wait on each other
-- in opposite orders, whichever direction they go.
--
-- On Citus these functions are not distributed (no `p_community` argument): they
-- run on the coordinator, each statement goes to the worker of its community, and
-- the two sides commit together by two-phase commit. Re-applied by `migrate`
-- whenever this file changes.

-- The ledger writes of the two sides of change `p_change` (`p_first_writes` in
-- community `p_first`, `p_second_writes` in `p_second`), made in the lock order
-- above, and the change's `interchange_moves` rows: per transaction and asset, the
-- sum of its entries on `interchange:<other>:<asset>` (so a row cannot disagree
-- with the entries it stands for). One row per write, `side` 1 or 2 as given; when
-- a write is refused (anything but 'created'), the rest is not attempted and no
-- move is recorded: the caller raises, and its rollback undoes the other side.
CREATE OR REPLACE FUNCTION interchange_write(
    p_district text, p_change text, p_kind text,
    p_first text, p_first_writes ledger_write[], p_second text, p_second_writes ledger_write[])
RETURNS TABLE (side integer, idx integer, outcome text, tx_id bigint, failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_order integer[] := CASE WHEN p_first COLLATE "C" < p_second COLLATE "C"
                              THEN ARRAY[1, 2] ELSE ARRAY[2, 1] END;
    v_community text;
    v_other text;
    v_writes ledger_write[];
    v_tx bigint[];
    r ledger_written;
    s integer;
BEGIN
    IF p_first = p_second THEN
        RAISE EXCEPTION 'interchange_write: both sides are community %', p_first;
    END IF;
    FOREACH s IN ARRAY v_order LOOP
        v_community := CASE s WHEN 1 THEN p_first ELSE p_second END;
        v_other := CASE s WHEN 1 THEN p_second ELSE p_first END;
        v_writes := CASE s WHEN 1 THEN p_first_writes ELSE p_second_writes END;
        v_tx := '{}';
        FOR r IN SELECT * FROM ledger_write(v_community, v_writes) LOOP
            side := s; idx := r.idx; outcome := r.outcome; tx_id := r.tx_id; failure := r.failure;
            RETURN NEXT;
            IF r.outcome <> 'created' THEN
                RETURN;
            END IF;
            v_tx[r.idx] := r.tx_id;
        END LOOP;
        INSERT INTO interchange_moves
               (community_id, tx_id, asset, change_id, counterparty, district_id, amount, kind)
        SELECT v_community, v_tx[w.ordinality], (w.accounts)[l.account].asset, p_change, v_other,
               p_district, sum(l.amount), p_kind
          FROM unnest(v_writes) WITH ORDINALITY AS w
         CROSS JOIN LATERAL unnest(w.legs) AS l
         WHERE (w.accounts)[l.account].address LIKE 'interchange:%'
         GROUP BY w.ordinality, (w.accounts)[l.account].asset
        HAVING sum(l.amount) <> 0;
    END LOOP;
END
$$;

-- Statement 2 of a redemption at a district-wide store of community
-- `p_store_community` by member `p_member` of `p_member_community` (statement 1 is
-- redemption_prepare in the store's community, with no member to check there).
-- The spend code is the member community's (a store-limited code is refused: its
-- store is one of its own community); then the redemption's row, lines and stock
-- in the store's community; then both sides' ledger writes (interchange_write):
-- `p_member_ledger` takes the points from the member to `interchange:<store
-- community>:points`, `p_store_ledger` from `interchange:<member community>:points`
-- to the store. The outputs are those of redemption_write, with the outcome of each
-- side (`failure` of the first refused).
CREATE OR REPLACE FUNCTION network_redemption_write(
    p_store_community text, p_member_community text, p_district text, p_id text,
    p_hash bytea, p_store text, p_member text, p_points bigint, p_actor text,
    p_skus text[], p_names text[], p_qtys bigint[], p_points_each bigint[], p_code bytea,
    p_member_ledger ledger_write[], p_store_ledger ledger_write[],
    OUT written boolean, OUT created_at timestamptz, OUT member_outcome text,
    OUT store_outcome text, OUT failure jsonb, OUT consent text, OUT consent_max bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF p_code IS NOT NULL THEN
        SELECT s.consent, s.consent_max INTO consent, consent_max
          FROM spend_code_consent(p_member_community, p_code, p_member, NULL, p_points) AS s;
        IF consent IS NOT NULL THEN
            written := false;
            RETURN;
        END IF;
    END IF;
    SELECT x.written, x.created_at INTO written, created_at
      FROM redemption_record(p_store_community, p_id, p_hash, p_store, p_member,
                             p_member_community, p_points, p_actor, p_skus, p_names, p_qtys,
                             p_points_each) AS x;
    IF NOT written THEN
        RETURN;
    END IF;
    IF p_code IS NOT NULL THEN
        UPDATE spend_codes c SET used_by = p_store_community || ':' || p_id, used_at = now()
         WHERE c.community_id = p_member_community AND c.code_hash = p_code;
    END IF;
    FOR r IN SELECT * FROM interchange_write(
                 p_district, 'redemption:' || p_store_community || ':' || p_id, 'redemption',
                 p_member_community, p_member_ledger, p_store_community, p_store_ledger) LOOP
        IF r.side = 1 THEN
            member_outcome := r.outcome;
        ELSE
            store_outcome := r.outcome;
        END IF;
        failure := coalesce(failure, r.failure);
    END LOOP;
END
$$;

-- Statement 2 of a return of such a redemption, under the redemption's lock: the
-- stock and the return's row in the store's community (redemption_return_record),
-- then both sides' ledger writes, each undoing its side of the redemption.
CREATE OR REPLACE FUNCTION network_return_write(
    p_store_community text, p_member_community text, p_district text, p_redemption text,
    p_return_id text, p_hash bytea, p_store text, p_skus text[], p_qtys bigint[],
    p_items jsonb, p_points bigint, p_actor text,
    p_member_ledger ledger_write[], p_store_ledger ledger_write[],
    OUT created_at timestamptz, OUT member_outcome text, OUT store_outcome text,
    OUT failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    created_at := redemption_return_record(p_store_community, p_redemption, p_return_id,
                                           p_hash, p_store, p_skus, p_qtys, p_items, p_points,
                                           p_actor);
    FOR r IN SELECT * FROM interchange_write(
                 p_district,
                 'redemption_return:' || p_store_community || ':' || p_redemption || ':'
                     || p_return_id,
                 'redemption_return',
                 p_member_community, p_member_ledger, p_store_community, p_store_ledger) LOOP
        IF r.side = 1 THEN
            member_outcome := r.outcome;
        ELSE
            store_outcome := r.outcome;
        END IF;
        failure := coalesce(failure, r.failure);
    END LOOP;
END
$$;
