-- The love supermarket's functions. A redemption is two statements between BEGIN
-- and COMMIT, and a return likewise:
--
--   1. redemption_prepare: the member exists; the basket's items, locked in sku
--      order; then, under those locks, whether the redemption id is taken.
--   2. redemption_write: the spend code consenting to it, locked and used up;
--      the redemption and its lines, the stock taken, and the ledger write
--      (ledger_write), all at once.
--
-- Between them the service prices the basket (service/supermarket/model.py) and
-- plans the ledger write. The lock order is that of
-- service/supermarket/service.py: the basket's items in sku order, the spend
-- code, then the member's points account (the ledger's write). A statement reads in one snapshot
-- taken when it starts, so a read that must see what the holder of a lock just
-- committed has to be a later statement: these are PL/pgSQL functions because
-- each statement of a volatile function takes a fresh snapshot.
--
-- A refusal (an unknown sku, too little stock, too few points) is raised by the
-- service, whose rollback undoes whatever statement 2 wrote: the functions leave
-- the decisions to the caller and never need a subtransaction. Re-applied by
-- `migrate` whenever this file changes.

-- Statement 1 of a redemption. Nothing is locked for a member who does not exist.
-- The items come back in sku order as parallel arrays (null when none was found).
-- `taken`: a redemption with this id exists (read after the item locks, so a
-- concurrent redemption of the same basket that committed while this one waited
-- is seen).
CREATE OR REPLACE FUNCTION redemption_prepare(
    p_community text, p_id text, p_member text, p_store text, p_skus text[],
    OUT member_found boolean, OUT taken boolean, OUT skus text[], OUT names text[],
    OUT points bigint[], OUT stocks bigint[])
LANGUAGE plpgsql AS $$
BEGIN
    -- A null member: one of another community, checked there (sql/functions/network.sql).
    member_found := p_member IS NULL OR EXISTS (SELECT 1 FROM members m
                             WHERE m.community_id = p_community AND m.id = p_member);
    IF NOT member_found THEN
        RETURN;
    END IF;
    -- Locked in the order of every writer of store_items (as redemption_return_write).
    SELECT array_agg(i.sku ORDER BY i.sku), array_agg(i.name ORDER BY i.sku),
           array_agg(i.points ORDER BY i.sku), array_agg(i.stock ORDER BY i.sku)
      INTO skus, names, points, stocks
      FROM (SELECT s.sku, s.name, s.points, s.stock FROM store_items s
             WHERE s.community_id = p_community AND s.store_id = p_store
               AND s.sku = ANY (p_skus)
             ORDER BY s.sku
               FOR UPDATE) i;
    taken := EXISTS (SELECT 1 FROM redemptions r
                      WHERE r.community_id = p_community AND r.id = p_id);
END
$$;

-- The spend code `p_code` (its SHA-256) consenting to a redemption of `p_points` at
-- store `p_store` for member `p_member`, locked (FOR NO KEY UPDATE: two tills
-- presenting one code take turns) and checked: null when it may be used, else
-- what is wrong with it ('unknown', 'used', 'expired', 'member', 'store',
-- 'ceiling' with `consent_max`). `p_store` is null for a store of another
-- community (SPEC section 16): a code limited to a store is valid at that store of
-- its own community only.
CREATE OR REPLACE FUNCTION spend_code_consent(
    p_community text, p_code bytea, p_member text, p_store text, p_points bigint,
    OUT consent text, OUT consent_max bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_code spend_codes;
BEGIN
    SELECT * INTO v_code FROM spend_codes c
     WHERE c.community_id = p_community AND c.code_hash = p_code
       FOR NO KEY UPDATE;
    consent := CASE
        WHEN v_code.code_hash IS NULL THEN 'unknown'
        WHEN v_code.used_by IS NOT NULL THEN 'used'
        WHEN v_code.expires_at <= clock_timestamp() THEN 'expired'
        WHEN v_code.member_id <> p_member THEN 'member'
        WHEN v_code.store IS NOT NULL AND v_code.store IS DISTINCT FROM p_store THEN 'store'
        WHEN v_code.max_points < p_points THEN 'ceiling'
    END;
    consent_max := CASE WHEN consent = 'ceiling' THEN v_code.max_points END;
END
$$;

-- The redemption's row, its lines and the stock taken, in the store's community;
-- false (and nothing written) when a concurrent redemption with the same id (another
-- basket, so not held back by the item locks) committed first. `p_member_community`:
-- the member's community when it is another one (SPEC section 16), else null.
CREATE OR REPLACE FUNCTION redemption_record(
    p_community text, p_id text, p_hash bytea, p_store text, p_member text,
    p_member_community text, p_points bigint, p_actor text, p_skus text[], p_names text[],
    p_qtys bigint[], p_points_each bigint[], OUT written boolean, OUT created_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO redemptions AS r
           (community_id, id, request_hash, store_id, member_id, member_community, points, actor)
    VALUES (p_community, p_id, p_hash, p_store, p_member, p_member_community, p_points, p_actor)
    ON CONFLICT (community_id, id) DO NOTHING
    RETURNING r.created_at INTO created_at;
    written := FOUND;
    IF NOT written THEN
        RETURN;
    END IF;
    INSERT INTO redemption_lines (community_id, redemption_id, sku, name, qty, points_each)
    SELECT p_community, p_id, l.sku, l.name, l.qty, l.points_each
      FROM unnest(p_skus, p_names, p_qtys, p_points_each) AS l(sku, name, qty, points_each);
    UPDATE store_items s SET stock = s.stock - c.qty
      FROM unnest(p_skus, p_qtys) AS c(sku, qty)
     WHERE s.community_id = p_community AND s.store_id = p_store AND s.sku = c.sku;
END
$$;

-- Statement 2 of a redemption, under the item locks of statement 1: the lines are
-- the priced basket (sku order), `p_ledger` the ledger's write. `p_code` is the
-- SHA-256 of the spend code consenting to it (null: no code needed): locked and
-- checked next (spend_code_consent; when `consent` says what is wrong with it,
-- nothing is written). `written` is false when a concurrent redemption with the
-- same id committed first: then nothing is written and the code is left as it
-- was. Otherwise the code is used up by this redemption, and outcome, tx_id and
-- failure are the ledger's; a refusal among them is raised by the caller, whose
-- rollback undoes this statement (the code's use with it).
CREATE OR REPLACE FUNCTION redemption_write(
    p_community text, p_id text, p_hash bytea, p_store text, p_member text, p_points bigint,
    p_actor text, p_skus text[], p_names text[], p_qtys bigint[], p_points_each bigint[],
    p_code bytea, p_ledger ledger_write[],
    OUT written boolean, OUT created_at timestamptz, OUT outcome text, OUT tx_id bigint,
    OUT failure jsonb, OUT consent text, OUT consent_max bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF p_code IS NOT NULL THEN
        SELECT s.consent, s.consent_max INTO consent, consent_max
          FROM spend_code_consent(p_community, p_code, p_member, p_store, p_points) AS s;
        IF consent IS NOT NULL THEN
            written := false;
            RETURN;
        END IF;
    END IF;
    SELECT x.written, x.created_at INTO written, created_at
      FROM redemption_record(p_community, p_id, p_hash, p_store, p_member, NULL, p_points,
                             p_actor, p_skus, p_names, p_qtys, p_points_each) AS x;
    IF NOT written THEN
        RETURN;
    END IF;
    IF p_code IS NOT NULL THEN
        UPDATE spend_codes c SET used_by = p_id, used_at = now()
         WHERE c.community_id = p_community AND c.code_hash = p_code;
    END IF;
    SELECT l.outcome, l.tx_id, l.failure INTO outcome, tx_id, failure
      FROM ledger_write(p_community, p_ledger) AS l;
END
$$;

-- A return folds the same way: BEGIN, redemption_return_prepare, the service
-- works out what goes back (model.returnable), redemption_return_write, COMMIT.
-- Its locks: the redemption's row, then the items in sku order, then the member's
-- account (the ledger's write).

-- Statement 1 of a return: the redemption locked (nothing else happens when it
-- does not exist), then, under its lock and so seeing every earlier return: the
-- request hash of the return `p_return_id` if it exists (and then nothing more),
-- the number of returns when the client gave no id, the lines as
-- redemption_get reads them, and the row id of the redemption's transaction.
-- `member_community`: the member's, when it is another community (SPEC section 16).
DROP FUNCTION IF EXISTS redemption_return_prepare(text, text, text);
CREATE FUNCTION redemption_return_prepare(
    p_community text, p_redemption text, p_return_id text,
    OUT store_id text, OUT member_id text, OUT return_hash bytea, OUT return_count bigint,
    OUT lines jsonb, OUT tx_row bigint, OUT member_community text)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.store_id, r.member_id, r.member_community INTO store_id, member_id, member_community
      FROM redemptions r
     WHERE r.community_id = p_community AND r.id = p_redemption
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The redemption's ledger transaction: a return undoes it (its lots come back).
    SELECT t.id INTO tx_row
      FROM transactions t
     WHERE t.community_id = p_community AND t.client_id = 'redemption:' || p_redemption;
    IF p_return_id IS NOT NULL THEN
        SELECT x.request_hash INTO return_hash
          FROM redemption_returns x
         WHERE x.community_id = p_community AND x.redemption_id = p_redemption
           AND x.id = p_return_id;
        IF FOUND THEN
            RETURN;
        END IF;
    ELSE
        SELECT count(*) INTO return_count
          FROM redemption_returns x
         WHERE x.community_id = p_community AND x.redemption_id = p_redemption;
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'sku', l.sku, 'name', l.name, 'qty', l.qty, 'points_each', l.points_each,
               'returned', l.returned) ORDER BY l.sku COLLATE "C"), '[]'::jsonb)
      INTO lines
      FROM redemption_lines l
     WHERE l.community_id = p_community AND l.redemption_id = p_redemption;
END
$$;

-- The stock of a return: under the redemption's lock, its items locked, the lines'
-- returned quantities and the stock put back, and the return's row (`p_items` as
-- its response lists them).
CREATE OR REPLACE FUNCTION redemption_return_record(
    p_community text, p_redemption text, p_return_id text, p_hash bytea, p_store text,
    p_skus text[], p_qtys bigint[], p_items jsonb, p_points bigint, p_actor text,
    OUT created_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    -- Locked in the order of every writer of store_items (as redemption_prepare).
    PERFORM 1 FROM store_items s
      WHERE s.community_id = p_community AND s.store_id = p_store AND s.sku = ANY (p_skus)
      ORDER BY s.sku
        FOR UPDATE;
    UPDATE redemption_lines l SET returned = l.returned + c.qty
      FROM unnest(p_skus, p_qtys) AS c(sku, qty)
     WHERE l.community_id = p_community AND l.redemption_id = p_redemption AND l.sku = c.sku;
    -- Stock comes back to items still in the catalogue (all of them: items are
    -- never deleted).
    UPDATE store_items s SET stock = s.stock + c.qty
      FROM unnest(p_skus, p_qtys) AS c(sku, qty)
     WHERE s.community_id = p_community AND s.store_id = p_store AND s.sku = c.sku;
    INSERT INTO redemption_returns AS x
           (community_id, redemption_id, id, request_hash, items, points, actor)
    VALUES (p_community, p_redemption, p_return_id, p_hash, p_items, p_points, p_actor)
    RETURNING x.created_at INTO created_at;
END
$$;

-- Statement 2 of a return, under the redemption's lock: the stock and the return's
-- row (redemption_return_record), and the ledger write (`p_ledger`). outcome, tx_id
-- and failure are the ledger's, as for redemption_write.
CREATE OR REPLACE FUNCTION redemption_return_write(
    p_community text, p_redemption text, p_return_id text, p_hash bytea, p_store text,
    p_skus text[], p_qtys bigint[], p_items jsonb, p_points bigint, p_actor text,
    p_ledger ledger_write[],
    OUT created_at timestamptz, OUT outcome text, OUT tx_id bigint, OUT failure jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    created_at := redemption_return_record(p_community, p_redemption, p_return_id, p_hash,
                                           p_store, p_skus, p_qtys, p_items, p_points, p_actor);
    SELECT l.outcome, l.tx_id, l.failure INTO outcome, tx_id, failure
      FROM ledger_write(p_community, p_ledger) AS l;
END
$$;
