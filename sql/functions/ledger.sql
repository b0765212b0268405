-- The ledger's functions: the write engine, sealing, and the guards that keep
-- what it wrote unchanged. Re-applied by `migrate` whenever this file changes.

-- The database refuses to change what the ledger has written. ---------------

CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'LG403';
END
$$;

CREATE OR REPLACE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE OR REPLACE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE OR REPLACE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE OR REPLACE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- A transaction row may change once: pending -> posted or voided, and then only
-- its status, when and why. The rows are compared with those three carried over,
-- which covers every column, including any added later.
CREATE OR REPLACE FUNCTION ledger_guard_transaction() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_expected transactions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transactions cannot be deleted' USING ERRCODE = 'LG403';
    END IF;
    v_expected := OLD;
    v_expected.status := NEW.status;
    v_expected.finalized_at := NEW.finalized_at;
    v_expected.void_reason := NEW.void_reason;
    IF OLD.status <> 'pending' OR NEW.status NOT IN ('posted', 'voided')
       OR v_expected IS DISTINCT FROM NEW THEN
        RAISE EXCEPTION 'transaction % is immutable once final', OLD.id USING ERRCODE = 'LG403';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER transactions_guard BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_transaction();
CREATE OR REPLACE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The write engine. ---------------------------------------------------------

-- The limit rule, the only place it is written: a change that lowers what an
-- account has available (posted - held) must leave at least its minimum.
CREATE OR REPLACE FUNCTION ledger_fits(p_available bigint, p_change bigint, p_minimum bigint)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_change >= 0 OR p_minimum IS NULL OR p_available + p_change >= p_minimum
$$;

-- The writes of a JSON document (an array of `ledger_write` objects), as the
-- service sends them: asyncpg's binary encoding of composite arrays costs the
-- service far more than msgspec's JSON (docs/performance.md).
CREATE OR REPLACE FUNCTION ledger_writes(p_document jsonb)
RETURNS ledger_write[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(SELECT w FROM jsonb_populate_recordset(NULL::ledger_write, p_document) AS w)
$$;

-- The ids of accounts, in the order given, opening accounts without limits on
-- first use. A member account that does not exist (members open theirs when they
-- join) gets a null id.
CREATE OR REPLACE FUNCTION ledger_account_ids(p_community text, p_addrs text[], p_assets text[])
RETURNS bigint[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_ids bigint[];
    v_unopened boolean;
BEGIN
    SELECT array_agg(a.id ORDER BY a.ord), bool_or(a.id IS NULL AND a.addr NOT LIKE 'member:%')
      INTO v_ids, v_unopened
      FROM (SELECT u.ord, u.addr,
                   (SELECT acc.id FROM accounts acc
                     WHERE acc.community_id = p_community AND acc.address = u.addr) AS id
              FROM unnest(p_addrs) WITH ORDINALITY AS u(addr, ord)) a;
    IF NOT v_unopened THEN
        RETURN v_ids;
    END IF;
    INSERT INTO accounts (community_id, address, asset)
    SELECT p_community, a.addr, a.asset
      FROM unnest(p_addrs, p_assets) AS a(addr, asset)
     WHERE a.addr NOT LIKE 'member:%'
     GROUP BY a.addr, a.asset
     ORDER BY a.addr COLLATE "C"
    ON CONFLICT (community_id, address) DO NOTHING;
    SELECT array_agg((SELECT acc.id FROM accounts acc
                       WHERE acc.community_id = p_community AND acc.address = u.addr)
                     ORDER BY u.ord)
      INTO v_ids
      FROM unnest(p_addrs) WITH ORDINALITY AS u(addr, ord);
    RETURN v_ids;
END
$$;

-- Applies writes in the order given, each on its own: one row per write, in order.
-- Every write to the ledger goes through here: a single write is a batch of one.
--
-- Locks, in the order every writer takes them: the pending transactions that
-- 'post' and 'void' writes finish (by id), then every member account of the
-- writes (by address, byte-wise). Under those locks each write's outcome is
-- decided in turn, with the balances that every earlier accepted write leaves;
-- then all accepted writes are written at once, one statement per table.
--
-- The outcome of a write is the first of these that applies:
--   not_found     an account does not exist (a member who has not joined; `failure`
--                 names it), or the transaction to post or void does not;
--   busy          (p_skip_locked) an account or the transaction is locked by another
--                 transaction: nothing written, and the caller writes it alone;
--   replay        the client id exists, written by the same request (`tx_id` is it);
--   conflict      the client id exists, written by another request;
--   posted, voided  the transaction to post or void already is;
--   expired       the transaction to post has passed its `expires_at`;
--   insufficient  a member account would go below its minimum (`failure` says which,
--                 what it has available, the minimum and the change);
--   created       a new transaction: posted, or pending with its debits held;
--   done          the pending transaction is posted or voided.
-- Refusals change nothing, so one refused write does not hold up the others. A
-- client id that a concurrent transaction committed after it was looked up (two
-- requests with one id that no account lock serialises) raises
-- serialization_failure: the caller's unit of work runs again and then sees it.
--
-- Why it is shaped this way (docs/performance.md, "The write engine"): the
-- decisions are PL/pgSQL over arrays, which costs microseconds; the statements
-- are few, each skipped when it has nothing to do, and plain enough (keys probed
-- with `= ANY`, rows written from `unnest`) that one generic plan serves every
-- call instead of a plan made anew each time.
CREATE OR REPLACE FUNCTION ledger_write(
    p_community text, p_writes ledger_write[], p_skip_locked boolean DEFAULT false)
RETURNS SETOF ledger_written
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    n integer := coalesce(cardinality(p_writes), 0);
    w ledger_write;
    c ledger_account_change;
    leg ledger_leg;
    r ledger_written;
    -- The accounts the writes name, one element per change, in write order: member
    -- accounts' addresses; the others' addresses, assets and ids.
    v_member_addr text[] := '{}';
    v_other_addr text[] := '{}';
    v_other_asset text[] := '{}';
    v_other_id bigint[];
    -- The member accounts locked: address -> slot; per slot the id, the posted
    -- balance under the lock, what is available as the writes are decided, and
    -- the change the accepted writes make to posted and held.
    v_slot jsonb;
    v_locked_addr text[];
    v_id bigint[];
    v_posted bigint[];
    v_available bigint[];
    v_posted_change bigint[];
    v_held_change bigint[];
    -- Per write: the account of each change (slot of a member account, or minus its
    -- place in v_other_addr), where its changes start in v_change.
    v_change integer[] := '{}';
    v_first integer[] := '{}';
    -- The transactions the writes name: client ids of creates, ids of posts and
    -- voids, and what the database holds under them (read under the locks).
    v_client_ids text[] := '{}';
    v_finish_ids bigint[] := '{}';
    v_found_client text[];
    v_found_id bigint[];
    v_found_hash bytea[];
    v_locked_tx bigint[];
    v_locked_status text[];
    v_locked_expires timestamptz[];
    v_missing text[];
    v_repeats boolean := false;  -- a key appears twice among the writes
    -- What each write comes to. Transaction ids not yet known are minus the place
    -- of the write among v_new.
    v_outcome text[] := array_fill(NULL::text, ARRAY[n]);
    v_failure jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    v_tx bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_new ledger_write[] := '{}';
    v_new_ids bigint[];
    -- The rows to write.
    e_tx bigint[] := '{}';
    e_leg smallint[] := '{}';
    e_account bigint[] := '{}';
    e_amount bigint[] := '{}';
    e_balance bigint[] := '{}';
    v_done_id bigint[] := '{}';
    v_done_status text[] := '{}';
    v_done_reason text[] := '{}';
    v_seal bigint[] := '{}';
    -- Member accounts' debt beyond their lots, and what the writes do to lots.
    v_uncovered bigint[];
    v_moves ledger_lot_move[] := '{}';
    v_locked_undoes bigint[];
    v_locked_terms jsonb[];
    v_listen text[];  -- the event types the community's webhooks listen to
    i integer;
    j integer;
    k integer;
    m integer;
    p integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    -- What the writes name, gathered without a statement.
    FOR i IN 1 .. n LOOP
        w := p_writes[i];
        v_first[i] := cardinality(v_change) + 1;
        FOREACH c IN ARRAY w.accounts LOOP
            IF c.member THEN
                v_member_addr := v_member_addr || c.address;
                v_change := v_change || 0;
            ELSE
                k := array_position(v_other_addr, c.address);
                IF k IS NULL THEN
                    v_other_addr := v_other_addr || c.address;
                    v_other_asset := v_other_asset || c.asset;
                    k := cardinality(v_other_addr);
                END IF;
                v_change := v_change || -k;
            END IF;
        END LOOP;
        IF w.op = 'create' THEN
            v_client_ids := v_client_ids || w.client_id;
        ELSE
            v_finish_ids := v_finish_ids || w.tx_id;
        END IF;
    END LOOP;
    IF n > 1 THEN
        SELECT (SELECT count(DISTINCT u) FROM unnest(v_client_ids) u) < cardinality(v_client_ids)
            OR (SELECT count(DISTINCT u) FROM unnest(v_finish_ids) u) < cardinality(v_finish_ids)
          INTO v_repeats;
    END IF;
    -- Locks: the transactions to finish, then the member accounts.
    IF cardinality(v_finish_ids) > 0 THEN
        IF p_skip_locked THEN
            SELECT array_agg(t.id), array_agg(t.status), array_agg(t.expires_at),
                   array_agg(t.undoes), array_agg(t.lot_terms)
              INTO v_locked_tx, v_locked_status, v_locked_expires, v_locked_undoes, v_locked_terms
              FROM (SELECT t.id, t.status, t.expires_at, t.undoes, t.lot_terms FROM transactions t
                     WHERE t.community_id = p_community AND t.id = ANY (v_finish_ids)
                     ORDER BY t.id
                       FOR UPDATE SKIP LOCKED) t;
        ELSE
            SELECT array_agg(t.id), array_agg(t.status), array_agg(t.expires_at),
                   array_agg(t.undoes), array_agg(t.lot_terms)
              INTO v_locked_tx, v_locked_status, v_locked_expires, v_locked_undoes, v_locked_terms
              FROM (SELECT t.id, t.status, t.expires_at, t.undoes, t.lot_terms FROM transactions t
                     WHERE t.community_id = p_community AND t.id = ANY (v_finish_ids)
                     ORDER BY t.id
                       FOR UPDATE) t;
        END IF;
    END IF;
    IF cardinality(v_member_addr) > 0 THEN
        IF p_skip_locked THEN
            SELECT array_agg(l.address), array_agg(l.id), array_agg(l.posted),
                   array_agg(l.posted - l.held), array_agg(l.uncovered)
              INTO v_locked_addr, v_id, v_posted, v_available, v_uncovered
              FROM (SELECT acc.address, acc.id, acc.posted, acc.held, acc.uncovered FROM accounts acc
                     WHERE acc.community_id = p_community AND acc.address = ANY (v_member_addr)
                       AND acc.member_id IS NOT NULL
                     ORDER BY acc.address COLLATE "C"
                       FOR UPDATE SKIP LOCKED) l;
        ELSE
            SELECT array_agg(l.address), array_agg(l.id), array_agg(l.posted),
                   array_agg(l.posted - l.held), array_agg(l.uncovered)
              INTO v_locked_addr, v_id, v_posted, v_available, v_uncovered
              FROM (SELECT acc.address, acc.id, acc.posted, acc.held, acc.uncovered FROM accounts acc
                     WHERE acc.community_id = p_community AND acc.address = ANY (v_member_addr)
                       AND acc.member_id IS NOT NULL
                     ORDER BY acc.address COLLATE "C"
                       FOR UPDATE) l;
        END IF;
        SELECT coalesce(jsonb_object_agg(u.address, u.slot), '{}'),
               array_fill(0::bigint, ARRAY[count(*)::integer])
          INTO v_slot, v_posted_change
          FROM unnest(v_locked_addr) WITH ORDINALITY AS u(address, slot);
        v_held_change := v_posted_change;
        IF p_skip_locked AND cardinality(v_member_addr) > coalesce(cardinality(v_id), 0) THEN
            -- Accounts not locked: held by another transaction (busy) or missing.
            SELECT array_agg(acc.address) INTO v_missing
              FROM accounts acc
             WHERE acc.community_id = p_community AND acc.address = ANY (v_member_addr)
               AND acc.member_id IS NOT NULL AND NOT acc.address = ANY (coalesce(v_locked_addr, '{}'));
        END IF;
    END IF;
    IF cardinality(v_other_addr) > 0 THEN
        v_other_id := ledger_account_ids(p_community, v_other_addr, v_other_asset);
    END IF;
    -- What exists under the creates' client ids, read after the locks (a statement
    -- of its own, so it sees what their holders committed).
    IF cardinality(v_client_ids) > 0 THEN
        SELECT array_agg(t.client_id), array_agg(t.id), array_agg(t.request_hash)
          INTO v_found_client, v_found_id, v_found_hash
          FROM transactions t
         WHERE t.community_id = p_community AND t.client_id = ANY (v_client_ids);
    END IF;
    -- Each write decided in turn.
    FOR i IN 1 .. n LOOP
        w := p_writes[i];
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            IF c.member THEN
                k := (v_slot ->> c.address)::integer;
                v_change[p] := k;
                IF k IS NULL AND c.address = ANY (v_missing) THEN
                    v_outcome[i] := 'busy';
                ELSIF k IS NULL THEN
                    v_outcome[i] := 'not_found';
                    v_failure[i] := jsonb_build_object('address', c.address);
                    EXIT;
                END IF;
            ELSIF v_other_id[-v_change[p]] IS NULL THEN
                v_outcome[i] := 'not_found';
                v_failure[i] := jsonb_build_object('address', c.address);
                EXIT;
            END IF;
            p := p + 1;
        END LOOP;
        IF w.op <> 'create' AND v_outcome[i] IS DISTINCT FROM 'not_found' THEN
            v_tx[i] := w.tx_id;
            k := array_position(v_locked_tx, w.tx_id);
            IF k IS NULL AND p_skip_locked AND EXISTS (
                    SELECT 1 FROM transactions t
                     WHERE t.community_id = p_community AND t.id = w.tx_id) THEN
                v_outcome[i] := 'busy';
            ELSIF k IS NULL THEN
                v_outcome[i] := 'not_found';
                v_tx[i] := NULL;
            END IF;
        END IF;
        CONTINUE WHEN v_outcome[i] IS NOT NULL;
        -- An earlier write of these with the same key that took effect.
        j := NULL;
        IF v_repeats THEN
            FOR q IN REVERSE i - 1 .. 1 LOOP
                IF (p_writes[q]).op = 'create' AND w.op = 'create'
                   AND (p_writes[q]).client_id = w.client_id
                   AND v_outcome[q] = 'created' THEN
                    j := q;
                    EXIT;
                ELSIF (p_writes[q]).op <> 'create' AND w.op <> 'create'
                   AND (p_writes[q]).tx_id = w.tx_id AND v_outcome[q] = 'done' THEN
                    j := q;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF w.op = 'create' THEN
            p := array_position(v_found_client, w.client_id);
            IF p IS NOT NULL OR j IS NOT NULL THEN
                v_tx[i] := CASE WHEN p IS NOT NULL THEN v_found_id[p] ELSE v_tx[j] END;
                v_outcome[i] := CASE
                    WHEN coalesce(v_found_hash[p], (p_writes[j]).request_hash) = w.request_hash
                    THEN 'replay' ELSE 'conflict' END;
                CONTINUE;
            END IF;
        ELSE
            IF j IS NOT NULL OR v_locked_status[k] <> 'pending' THEN
                v_outcome[i] := CASE WHEN j IS NULL THEN v_locked_status[k]
                                     WHEN (p_writes[j]).op = 'post' THEN 'posted'
                                     ELSE 'voided' END;
                CONTINUE;
            END IF;
            IF w.op = 'post' AND v_locked_expires[k] <= now() THEN
                v_outcome[i] := 'expired';
                CONTINUE;
            END IF;
        END IF;
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            k := v_change[p];
            p := p + 1;
            IF c.member AND NOT ledger_fits(v_available[k], c.posted - c.held, c.minimum) THEN
                v_outcome[i] := 'insufficient';
                v_failure[i] := jsonb_build_object('address', c.address,
                                                   'available', v_available[k],
                                                   'minimum', c.minimum,
                                                   'change', c.posted - c.held);
                EXIT;
            END IF;
        END LOOP;
        CONTINUE WHEN v_outcome[i] IS NOT NULL;
        -- Accepted: what it changes, and the rows it writes.
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            k := v_change[p];
            p := p + 1;
            IF c.member THEN
                v_available[k] := v_available[k] + c.posted - c.held;
                v_posted_change[k] := v_posted_change[k] + c.posted;
                v_held_change[k] := v_held_change[k] + c.held;
            END IF;
        END LOOP;
        IF w.op = 'create' THEN
            v_outcome[i] := 'created';
            v_new := v_new || w;
            v_tx[i] := -cardinality(v_new);
        ELSE
            v_outcome[i] := 'done';
            v_done_id := v_done_id || w.tx_id;
            v_done_status := v_done_status || CASE WHEN w.op = 'post' THEN 'posted' ELSE 'voided' END;
            v_done_reason := v_done_reason || w.void_reason;
        END IF;
        -- What it does to its member accounts' lots (ledger_lots).
        p := v_first[i];
        j := CASE WHEN w.op <> 'create' THEN array_position(v_locked_tx, w.tx_id) END;
        FOREACH c IN ARRAY w.accounts LOOP
            k := v_change[p];
            p := p + 1;
            CONTINUE WHEN NOT c.member;
            IF w.op = 'create' AND w.pending THEN
                IF c.held > 0 THEN
                    v_moves := v_moves || ROW(v_tx[i], k, c.asset, 'hold', c.held, NULL, NULL)::ledger_lot_move;
                END IF;
            ELSIF w.op = 'create' THEN
                IF c.posted <> 0 THEN
                    v_moves := v_moves || ROW(v_tx[i], k, c.asset,
                        CASE WHEN c.posted > 0 THEN 'credit' ELSE 'debit' END, abs(c.posted),
                        w.undoes, w.lot_terms)::ledger_lot_move;
                END IF;
            ELSE
                IF c.held < 0 THEN
                    v_moves := v_moves || ROW(v_tx[i], k, c.asset, 'settle',
                        CASE WHEN w.op = 'post' THEN greatest(-c.posted, 0) ELSE 0 END,
                        NULL, NULL)::ledger_lot_move;
                END IF;
                IF c.posted > 0 THEN
                    v_moves := v_moves || ROW(v_tx[i], k, c.asset, 'credit', c.posted,
                        v_locked_undoes[j], v_locked_terms[j])::ledger_lot_move;
                END IF;
            END IF;
        END LOOP;
        CONTINUE WHEN w.op = 'create' AND w.pending;
        -- Final now: sealed; if posted, its entries, a member entry with the
        -- balance it leaves.
        v_seal := v_seal || v_tx[i];
        CONTINUE WHEN w.op = 'void';
        m := 0;
        FOREACH leg IN ARRAY w.legs LOOP
            k := v_change[v_first[i] + leg.account - 1];
            e_tx := e_tx || v_tx[i];
            e_leg := e_leg || m::smallint;
            m := m + 1;
            e_amount := e_amount || leg.amount;
            IF (w.accounts[leg.account]).member THEN
                v_posted[k] := v_posted[k] + leg.amount;
                e_account := e_account || v_id[k];
                e_balance := e_balance || v_posted[k];
            ELSE
                e_account := e_account || v_other_id[-k];
                e_balance := e_balance || NULL::bigint;
            END IF;
        END LOOP;
    END LOOP;
    -- The accepted writes, one statement per table. New transactions in write
    -- order, so that their ids follow it.
    IF cardinality(v_new) > 0 THEN
        WITH inserted AS (
            INSERT INTO transactions AS t
                (community_id, client_id, request_hash, kind, status, pending_postings,
                 memo, metadata, reason, rule_id, rule_version, event_id, actor,
                 on_behalf_of, reversal_of, undoes, lot_terms, expires_at, finalized_at)
            SELECT p_community, x.client_id, x.request_hash, x.kind,
                   CASE WHEN x.pending THEN 'pending' ELSE 'posted' END,
                   CASE WHEN x.pending THEN x.reserved END, x.memo, x.metadata, x.reason,
                   x.rule_id, x.rule_version, x.event_id, x.actor, x.on_behalf_of,
                   x.reversal_of, x.undoes, x.lot_terms, now() + make_interval(secs => x.ttl_s),
                   CASE WHEN NOT x.pending THEN now() END
              FROM unnest(v_new) AS x
            ON CONFLICT (community_id, client_id) DO NOTHING
            RETURNING t.id
        )
        SELECT array_agg(inserted.id ORDER BY inserted.id) INTO v_new_ids FROM inserted;
        IF coalesce(cardinality(v_new_ids), 0) < cardinality(v_new) THEN
            RAISE EXCEPTION 'a concurrent transaction wrote a client id of this write'
                USING ERRCODE = 'serialization_failure';
        END IF;
        FOR i IN 1 .. n LOOP
            IF v_tx[i] < 0 THEN
                v_tx[i] := v_new_ids[-v_tx[i]];
            END IF;
        END LOOP;
        FOR i IN 1 .. coalesce(cardinality(e_tx), 0) LOOP
            IF e_tx[i] < 0 THEN
                e_tx[i] := v_new_ids[-e_tx[i]];
            END IF;
        END LOOP;
        FOR i IN 1 .. coalesce(cardinality(v_seal), 0) LOOP
            IF v_seal[i] < 0 THEN
                v_seal[i] := v_new_ids[-v_seal[i]];
            END IF;
        END LOOP;
    END IF;
    IF cardinality(e_tx) > 0 THEN
        INSERT INTO entries (community_id, tx_id, leg, account_id, amount, balance_after)
        SELECT p_community, e.tx, e.leg, e.account, e.amount, e.balance
          FROM unnest(e_tx, e_leg, e_account, e_amount, e_balance)
               AS e(tx, leg, account, amount, balance);
    END IF;
    IF cardinality(v_moves) > 0 THEN
        v_uncovered := ledger_lots(p_community, v_moves, v_id, v_uncovered, v_new_ids);
    END IF;
    IF cardinality(v_new) + cardinality(v_done_id) > 0 AND cardinality(v_id) > 0 THEN
        UPDATE accounts AS a
           SET posted = a.posted + u.posted, held = a.held + u.held, uncovered = u.uncovered
          FROM unnest(v_id, v_posted_change, v_held_change, v_uncovered)
               AS u(id, posted, held, uncovered)
         WHERE a.community_id = p_community AND a.id = u.id
           AND (u.posted <> 0 OR u.held <> 0 OR u.uncovered <> a.uncovered);
    END IF;
    IF cardinality(v_done_id) > 0 THEN
        UPDATE transactions AS t
           SET status = u.status, finalized_at = now(), void_reason = u.reason
          FROM unnest(v_done_id, v_done_status, v_done_reason) AS u(id, status, reason)
         WHERE t.community_id = p_community AND t.id = u.id;
    END IF;
    IF cardinality(v_seal) > 0 THEN
        INSERT INTO seal_queue (community_id, tx_id)
        SELECT p_community, s.tx FROM unnest(v_seal) AS s(tx);
    END IF;
    -- The webhook events of what was written, in this transaction (the outbox,
    -- sql/functions/webhooks.sql): one probe of `webhooks` when nobody listens.
    IF cardinality(v_new) + cardinality(v_done_id) > 0 THEN
        SELECT array_agg(DISTINCT x.type) INTO v_listen
          FROM webhooks wh, unnest(wh.events) AS x(type)
         WHERE wh.community_id = p_community AND wh.deleted_at IS NULL;
    END IF;
    IF v_listen IS NOT NULL THEN
        PERFORM webhook_emit(p_community, webhook_ledger_events(p_community, v_listen,
            ARRAY(SELECT v_tx[x] FROM generate_series(1, n) AS x
                   WHERE v_outcome[x] IN ('created', 'done') ORDER BY x),
            ARRAY(SELECT CASE WHEN v_outcome[x] = 'done'
                              THEN CASE WHEN (p_writes[x]).op = 'post' THEN 'posted'
                                        ELSE 'voided' END
                              WHEN (p_writes[x]).pending THEN 'held'
                              ELSE 'created' END
                    FROM generate_series(1, n) AS x
                   WHERE v_outcome[x] IN ('created', 'done') ORDER BY x)));
    END IF;
    FOR i IN 1 .. n LOOP
        w := p_writes[i];
        r.idx := i;
        r.outcome := v_outcome[i];
        r.tx_id := v_tx[i];
        r.created_at := CASE WHEN v_outcome[i] = 'created' THEN now() END;
        r.expires_at := CASE WHEN v_outcome[i] = 'created'
                             THEN now() + make_interval(secs => w.ttl_s) END;
        r.finalized_at := CASE WHEN v_outcome[i] = 'done'
                                 OR (v_outcome[i] = 'created' AND NOT w.pending) THEN now() END;
        r.failure := v_failure[i];
        RETURN NEXT r;
    END LOOP;
END
$$;

-- Sealing. ------------------------------------------------------------------

-- The digests of final transactions, in the order given: everything about each
-- that must never change. Set-based, so sealing thousands costs a few statements.
CREATE OR REPLACE FUNCTION ledger_tx_digests(p_community text, p_tx_ids bigint[])
RETURNS TABLE (tx_id bigint, digest bytea)
LANGUAGE sql STABLE AS $$
    WITH legs AS (
        SELECT e.tx_id,
               jsonb_agg(jsonb_build_array(
                   e.leg, a.address, a.asset, e.amount, e.balance_after, e.seq,
                   (extract(epoch FROM e.created_at) * 1000000)::bigint)
                 ORDER BY e.leg) AS legs
          FROM entries e
          JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
         WHERE e.community_id = p_community AND e.tx_id = ANY (p_tx_ids)
         GROUP BY e.tx_id
    )
    SELECT u.tx_id,
           sha256(convert_to((jsonb_build_array(
               t.id, t.client_id, encode(t.request_hash, 'hex'), t.kind, t.status,
               t.pending_postings, t.memo, t.metadata, t.reason, t.rule_id, t.rule_version,
               t.event_id, t.actor, t.reversal_of,
               (extract(epoch FROM t.created_at) * 1000000)::bigint,
               (extract(epoch FROM t.expires_at) * 1000000)::bigint,
               (extract(epoch FROM t.finalized_at) * 1000000)::bigint,
               t.void_reason, l.legs)
               -- Fields added later, only when set: older digests stay as sealed.
               || CASE WHEN t.undoes IS NULL AND t.lot_terms IS NULL THEN '[]'::jsonb
                       ELSE jsonb_build_array(t.undoes, t.lot_terms) END
               -- (one element, so it never reads as the two above)
               || CASE WHEN t.on_behalf_of IS NULL THEN '[]'::jsonb
                       ELSE jsonb_build_array(jsonb_build_object('on_behalf_of', t.on_behalf_of))
                  END)::text, 'UTF8'))
      FROM unnest(p_tx_ids) WITH ORDINALITY AS u(tx_id, ord)
      JOIN transactions t ON t.community_id = p_community AND t.id = u.tx_id
      LEFT JOIN legs l ON l.tx_id = u.tx_id
     ORDER BY u.ord
$$;

-- Seals final transactions into the community's hash chain, and rolls their
-- entries on accounts without limits into those accounts' stored balance. Only
-- one sealer works on a community at a time (the chain head is locked, others
-- skip it), and it takes only writes whose xid is below every running
-- transaction's, so the chain's order never has to change afterwards.
-- On Citus a queued row can also carry an xid this node has not handed out yet
-- (at or above the snapshot's xmax): a row of a community whose shards moved here
-- from a node whose counter was ahead. A row this node wrote is never seen with
-- such an xid, so that row was committed on the node it came from, before the
-- move; it is sealed now, ahead of this node's own (docs/scaling.md, "Moving one
-- community"), instead of waiting until this node's counter passes it.
CREATE OR REPLACE FUNCTION ledger_seal(p_community text, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_hash bytea;
    v_txs bigint[];
    v_digests bytea[];
    v_hashes bytea[] := '{}';
    i integer;
BEGIN
    SELECT h.seq, h.hash INTO v_seq, v_hash
      FROM chain_heads h WHERE h.community_id = p_community
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT array_agg(q.tx_id ORDER BY q.moved DESC, q.xid, q.tx_id) INTO v_txs
      FROM (SELECT q.tx_id, q.xid, q.xid >= pg_snapshot_xmax(s.now) AS moved
              FROM seal_queue q, (SELECT pg_current_snapshot() AS now) s
             WHERE q.community_id = p_community
               AND (q.xid < pg_snapshot_xmin(s.now) OR q.xid >= pg_snapshot_xmax(s.now))
             ORDER BY 3 DESC, q.xid, q.tx_id
             LIMIT p_limit) q;
    IF v_txs IS NULL THEN
        RETURN 0;
    END IF;
    SELECT array_agg(d.digest) INTO v_digests FROM ledger_tx_digests(p_community, v_txs) d;
    FOR i IN 1..cardinality(v_txs) LOOP
        v_hash := sha256(v_hash || v_digests[i]);
        v_hashes := v_hashes || v_hash;
    END LOOP;
    INSERT INTO seals (community_id, seq, tx_id, digest, hash)
    SELECT p_community, v_seq + s.ord, s.tx_id, s.digest, s.hash
      FROM unnest(v_txs, v_digests, v_hashes) WITH ORDINALITY AS s(tx_id, digest, hash, ord);
    UPDATE accounts a
       SET posted = a.posted + s.total
      FROM (SELECT e.account_id, sum(e.amount) AS total
              FROM entries e
             WHERE e.community_id = p_community AND e.tx_id = ANY (v_txs)
             GROUP BY e.account_id) s
     WHERE a.community_id = p_community AND a.id = s.account_id AND a.member_id IS NULL;
    DELETE FROM seal_queue WHERE community_id = p_community AND tx_id = ANY (v_txs);
    UPDATE chain_heads
       SET seq = v_seq + cardinality(v_txs), hash = v_hash
     WHERE community_id = p_community;
    RETURN cardinality(v_txs);
END
$$;

-- Recomputes the hash chain of a community from its first seal; returns one row
-- per seal whose digest or link no longer matches what was sealed.
CREATE OR REPLACE FUNCTION ledger_verify_chain(p_community text)
RETURNS TABLE (seq bigint, tx_id bigint, problem text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_hash bytea := '\x'::bytea;
    v_expected_seq bigint := 0;
    r record;
BEGIN
    FOR r IN SELECT s.seq, s.tx_id, s.digest, s.hash, d.digest AS recomputed
               FROM seals s
               LEFT JOIN ledger_tx_digests(
                         p_community,
                         ARRAY(SELECT x.tx_id FROM seals x WHERE x.community_id = p_community)) d
                      ON d.tx_id = s.tx_id
              WHERE s.community_id = p_community
              ORDER BY s.seq
    LOOP
        v_expected_seq := v_expected_seq + 1;
        IF r.seq <> v_expected_seq THEN
            seq := r.seq; tx_id := r.tx_id;
            problem := format('seal %s follows seal %s', r.seq, v_expected_seq - 1);
            RETURN NEXT;
            v_expected_seq := r.seq;
        END IF;
        IF r.recomputed IS DISTINCT FROM r.digest THEN
            seq := r.seq; tx_id := r.tx_id;
            problem := 'transaction changed after it was sealed';
            RETURN NEXT;
        END IF;
        v_hash := sha256(v_hash || r.digest);
        IF v_hash <> r.hash THEN
            seq := r.seq; tx_id := r.tx_id;
            problem := 'hash chain broken';
            RETURN NEXT;
            v_hash := r.hash;
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM chain_heads h WHERE h.community_id = p_community
                      AND h.seq = v_expected_seq AND h.hash = v_hash) THEN
        seq := v_expected_seq; tx_id := NULL;
        problem := 'chain head does not match the last seal';
        RETURN NEXT;
    END IF;
END
$$;

-- Lots (SPEC section 9; the tables and their invariants: sql/migrations/0005_lots.sql).

CREATE OR REPLACE TRIGGER lot_uses_append_only BEFORE UPDATE OR DELETE ON lot_uses
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- When a lot earned at `p_earned` expires under `p_policy` ('never',
-- 'year_end_plus_one', 'months:N', 'at:<timestamp>'), in time zone `p_tz`:
-- year_end_plus_one is 1 January of the second year after; months:N the end of
-- the Nth calendar month after the month earned. Null: never.
CREATE OR REPLACE FUNCTION ledger_lot_expiry(p_policy text, p_earned timestamptz, p_tz text)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_policy IS NULL OR p_policy = 'never' THEN NULL
        WHEN p_policy = 'year_end_plus_one'
            THEN (date_trunc('year', p_earned AT TIME ZONE p_tz) + interval '2 years')
                 AT TIME ZONE p_tz
        WHEN p_policy LIKE 'months:%'
            THEN (date_trunc('month', p_earned AT TIME ZONE p_tz)
                  + make_interval(months => substr(p_policy, 8)::integer + 1)) AT TIME ZONE p_tz
        WHEN p_policy LIKE 'at:%' THEN substr(p_policy, 4)::timestamptz
    END
$$;

-- Applies the moves of one call of `ledger_write` to the lots of its member
-- accounts (slots of `p_ids`, whose `uncovered` is `p_uncovered`), in order;
-- returns each slot's `uncovered` after them. Temporary transaction ids (minus
-- the place among the new) are those of `p_new_ids`. A move is
--   credit  amount: gives back first what transaction `undoes` consumed on the
--           account, latest first; then pays `uncovered`; the rest is a new lot
--           on the terms of `terms`;
--   debit   amount: takes `undoes`'s own lot first (reversing a credit), then free
--           lots in the fixed order; what no lot has raises `uncovered`;
--   hold    amount: holds free lots in the fixed order for a pending debit;
--   settle  amount: the pending transaction's holds on the account go; the first
--           `amount` of them is consumed (posted), the rest is free again.
-- The lots named by undone or settled transactions are read in one statement,
-- each debited account's free lots in the fixed order only as far as its debits
-- reach; decided over arrays, and written in one statement.
CREATE OR REPLACE FUNCTION ledger_lots(
    p_community text, p_moves ledger_lot_move[], p_ids bigint[], p_uncovered bigint[],
    p_new_ids bigint[])
RETURNS bigint[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    mv ledger_lot_move;
    v_unc bigint[] := p_uncovered;
    v_need bigint[] := '{}';      -- accounts whose lots are read
    v_want bigint[];              -- per slot: what its debits and holds take
    v_cover bigint;
    r record;
    v_undone bigint[] := '{}';
    v_settled bigint[] := '{}';
    -- Lots read or made: id, slot, expiry, earned, remaining, held, transaction,
    -- whether changed, whether new (and then its amount).
    l_id bigint[]; l_slot integer[]; l_exp timestamptz[]; l_earned timestamptz[];
    l_rem bigint[]; l_held bigint[]; l_tx bigint[]; l_dirty boolean[]; l_new boolean[];
    l_amount bigint[];
    -- What undone transactions consumed, net, latest first.
    u_of bigint[]; u_acc bigint[]; u_lot bigint[]; u_net bigint[];
    -- Holds of the pending transactions settled.
    h_tx bigint[]; h_acc bigint[]; h_lot bigint[]; h_amount bigint[];
    -- Rows to write.
    w_acc bigint[] := '{}'; w_lot bigint[] := '{}'; w_tx bigint[] := '{}';
    w_amount bigint[] := '{}'; w_undoes bigint[] := '{}';
    n_tx bigint[] := '{}'; n_ord smallint[] := '{}'; n_acc bigint[] := '{}';
    n_lot bigint[] := '{}'; n_amount bigint[] := '{}';
    v_tx bigint;
    v_left bigint;
    v_take bigint;
    v_best integer;
    v_earned timestamptz;
    v_mine boolean;
    v_mine_best boolean;
    v_policy text;
    v_tz text;  -- the community's, read once when a lot expires
    i integer;
    k integer;
BEGIN
    IF coalesce(cardinality(p_moves), 0) = 0 THEN
        RETURN v_unc;
    END IF;
    -- Most writes to members only credit them (awards, transfers in): nothing is
    -- read or owed, and each credit is a new lot, written in one statement.
    v_cover := 0;
    FOREACH mv IN ARRAY p_moves LOOP
        IF mv.op <> 'credit' OR mv.undoes IS NOT NULL OR v_unc[mv.slot] > 0 THEN
            v_cover := NULL;
            EXIT;
        END IF;
    END LOOP;
    IF v_cover IS NOT NULL THEN
        INSERT INTO lots (community_id, account_id, transaction_id, earned_at, expires_at,
                          amount, remaining)
        SELECT p_community, p_ids[m.slot], CASE WHEN m.tx < 0 THEN p_new_ids[-m.tx] ELSE m.tx END,
               e.earned,
               CASE WHEN e.policy = 'never' THEN NULL
                    ELSE ledger_lot_expiry(e.policy, e.earned,
                             (SELECT c.timezone FROM communities c WHERE c.id = p_community))
               END,
               m.amount, m.amount
          FROM unnest(p_moves) AS m
         CROSS JOIN LATERAL (
               SELECT coalesce((m.terms ->> 'earned_at')::timestamptz, now()) AS earned,
                      coalesce(m.terms ->> 'expires', m.terms ->> m.asset, 'never') AS policy) e;
        RETURN v_unc;
    END IF;
    v_want := array_fill(0::bigint, ARRAY[cardinality(p_ids)]);
    FOREACH mv IN ARRAY p_moves LOOP
        IF mv.op <> 'credit' THEN
            v_need := v_need || p_ids[mv.slot];
        END IF;
        IF mv.op IN ('debit', 'hold') THEN
            v_want[mv.slot] := v_want[mv.slot] + mv.amount;
        END IF;
        IF mv.undoes IS NOT NULL THEN
            v_need := v_need || p_ids[mv.slot];
            v_undone := v_undone || mv.undoes;
        END IF;
        IF mv.op = 'settle' THEN
            v_settled := v_settled || CASE WHEN mv.tx < 0 THEN p_new_ids[-mv.tx] ELSE mv.tx END;
        END IF;
    END LOOP;
    IF cardinality(v_undone) > 0 THEN
        SELECT array_agg(x.of_tx ORDER BY x.last DESC), array_agg(x.account_id ORDER BY x.last DESC),
               array_agg(x.lot_id ORDER BY x.last DESC), array_agg(x.net ORDER BY x.last DESC)
          INTO u_of, u_acc, u_lot, u_net
          FROM (SELECT coalesce(u.undoes, u.tx_id) AS of_tx, u.account_id, u.lot_id,
                       sum(u.amount) AS net, max(u.id) AS last
                  FROM lot_uses u
                 WHERE u.community_id = p_community AND u.account_id = ANY (v_need)
                   AND ((u.tx_id = ANY (v_undone) AND u.undoes IS NULL AND u.amount > 0)
                        OR u.undoes = ANY (v_undone))
                 GROUP BY 1, 2, 3
                HAVING sum(u.amount) > 0) x;
    END IF;
    IF cardinality(v_settled) > 0 THEN
        SELECT array_agg(h.tx_id ORDER BY h.tx_id, h.ord), array_agg(h.account_id ORDER BY h.tx_id, h.ord),
               array_agg(h.lot_id ORDER BY h.tx_id, h.ord), array_agg(h.amount ORDER BY h.tx_id, h.ord)
          INTO h_tx, h_acc, h_lot, h_amount
          FROM lot_holds h
         WHERE h.community_id = p_community AND h.tx_id = ANY (v_settled);
    END IF;
    -- The lots named: those undone consumption goes back to, those held by the
    -- settled, and the undone credits' own.
    IF cardinality(v_need) > 0 THEN
        SELECT array_agg(l.id), array_agg(array_position(p_ids, l.account_id)),
               array_agg(l.expires_at), array_agg(l.earned_at), array_agg(l.remaining),
               array_agg(l.held), array_agg(l.transaction_id), array_agg(false),
               array_agg(false), array_agg(l.amount)
          INTO l_id, l_slot, l_exp, l_earned, l_rem, l_held, l_tx, l_dirty, l_new, l_amount
          FROM lots l
         WHERE l.community_id = p_community AND l.account_id = ANY (v_need)
           AND (l.id = ANY (coalesce(u_lot, '{}') || coalesce(h_lot, '{}'))
                OR (l.transaction_id = ANY (v_undone) AND l.remaining > 0));
    END IF;
    l_id := coalesce(l_id, '{}'); l_slot := coalesce(l_slot, '{}'); l_exp := coalesce(l_exp, '{}');
    l_earned := coalesce(l_earned, '{}'); l_rem := coalesce(l_rem, '{}');
    l_held := coalesce(l_held, '{}'); l_tx := coalesce(l_tx, '{}');
    l_dirty := coalesce(l_dirty, '{}'); l_new := coalesce(l_new, '{}');
    l_amount := coalesce(l_amount, '{}');
    -- Then each debited account's free lots in the fixed order, only as far as
    -- its debits and holds can reach: a member with many lots costs a debit the
    -- few it takes, not all of them (the index lots_open is in this order).
    FOR k IN 1 .. cardinality(p_ids) LOOP
        CONTINUE WHEN v_want[k] = 0;
        v_cover := 0;
        FOR r IN SELECT l.id, l.expires_at, l.earned_at, l.remaining, l.held,
                        l.transaction_id, l.amount
                   FROM lots l
                  WHERE l.community_id = p_community AND l.account_id = p_ids[k]
                    AND l.remaining > 0
                  ORDER BY l.expires_at, l.earned_at, l.id
        LOOP
            CONTINUE WHEN r.id = ANY (l_id);
            l_id := l_id || r.id; l_slot := l_slot || k; l_exp := l_exp || r.expires_at;
            l_earned := l_earned || r.earned_at; l_rem := l_rem || r.remaining;
            l_held := l_held || r.held; l_tx := l_tx || r.transaction_id;
            l_dirty := l_dirty || false; l_new := l_new || false; l_amount := l_amount || r.amount;
            v_cover := v_cover + r.remaining - r.held;
            EXIT WHEN v_cover >= v_want[k];
        END LOOP;
    END LOOP;
    FOREACH mv IN ARRAY p_moves LOOP
        v_tx := CASE WHEN mv.tx < 0 THEN p_new_ids[-mv.tx] ELSE mv.tx END;
        v_left := mv.amount;
        k := mv.slot;
        IF mv.op = 'credit' THEN
            -- Give back what the undone transaction consumed here, latest first.
            FOR i IN 1 .. CASE WHEN mv.undoes IS NULL THEN 0 ELSE coalesce(cardinality(u_of), 0) END LOOP
                EXIT WHEN v_left = 0;
                CONTINUE WHEN u_of[i] <> mv.undoes OR u_acc[i] <> p_ids[k] OR u_net[i] = 0;
                IF u_lot[i] IS NULL THEN
                    v_take := least(u_net[i], v_left, v_unc[k]);
                    v_unc[k] := v_unc[k] - v_take;
                ELSE
                    v_take := least(u_net[i], v_left);
                    v_best := array_position(l_id, u_lot[i]);
                    l_rem[v_best] := l_rem[v_best] + v_take;
                    l_dirty[v_best] := true;
                END IF;
                CONTINUE WHEN v_take = 0;
                u_net[i] := u_net[i] - v_take;
                v_left := v_left - v_take;
                w_acc := w_acc || p_ids[k]; w_lot := w_lot || u_lot[i]; w_tx := w_tx || v_tx;
                w_amount := w_amount || -v_take; w_undoes := w_undoes || mv.undoes;
            END LOOP;
            -- Pay what earlier debits could not take from lots.
            v_take := least(v_left, v_unc[k]);
            IF v_take > 0 THEN
                v_unc[k] := v_unc[k] - v_take;
                v_left := v_left - v_take;
                w_acc := w_acc || p_ids[k]; w_lot := w_lot || NULL::bigint; w_tx := w_tx || v_tx;
                w_amount := w_amount || -v_take; w_undoes := w_undoes || NULL::bigint;
            END IF;
            IF v_left > 0 THEN
                v_earned := coalesce((mv.terms ->> 'earned_at')::timestamptz, now());
                l_id := l_id || nextval('lot_seq');
                l_slot := l_slot || k;
                v_policy := coalesce(mv.terms ->> 'expires', mv.terms ->> mv.asset, 'never');
                IF v_tz IS NULL AND v_policy <> 'never' THEN
                    SELECT c.timezone INTO v_tz FROM communities c WHERE c.id = p_community;
                END IF;
                l_exp := l_exp || ledger_lot_expiry(v_policy, v_earned, v_tz);
                l_earned := l_earned || v_earned;
                l_rem := l_rem || v_left;
                l_held := l_held || 0::bigint;
                l_tx := l_tx || v_tx;
                l_dirty := l_dirty || false;
                l_new := l_new || true;
                l_amount := l_amount || v_left;
            END IF;
        ELSIF mv.op = 'settle' THEN
            FOR i IN 1 .. coalesce(cardinality(h_tx), 0) LOOP
                CONTINUE WHEN h_tx[i] <> v_tx OR h_acc[i] <> p_ids[k];
                v_take := least(h_amount[i], v_left);
                v_left := v_left - v_take;
                IF h_lot[i] IS NULL THEN
                    v_unc[k] := v_unc[k] + v_take;
                ELSE
                    v_best := array_position(l_id, h_lot[i]);
                    l_held[v_best] := l_held[v_best] - h_amount[i];
                    l_rem[v_best] := l_rem[v_best] - v_take;
                    l_dirty[v_best] := true;
                END IF;
                IF v_take > 0 THEN
                    w_acc := w_acc || p_ids[k]; w_lot := w_lot || h_lot[i]; w_tx := w_tx || v_tx;
                    w_amount := w_amount || v_take; w_undoes := w_undoes || NULL::bigint;
                END IF;
            END LOOP;
        ELSE
            -- debit or hold: free lots, the undone credit's own first, then in order.
            WHILE v_left > 0 LOOP
                v_best := NULL;
                FOR i IN 1 .. cardinality(l_id) LOOP
                    CONTINUE WHEN l_slot[i] <> k OR l_rem[i] - l_held[i] <= 0;
                    v_mine := l_tx[i] IS NOT DISTINCT FROM mv.undoes;
                    IF v_best IS NULL OR (v_mine AND NOT v_mine_best)
                       OR (v_mine = v_mine_best
                           AND (coalesce(l_exp[i], 'infinity'), l_earned[i], l_id[i])
                             < (coalesce(l_exp[v_best], 'infinity'), l_earned[v_best], l_id[v_best]))
                    THEN
                        v_best := i;
                        v_mine_best := v_mine;
                    END IF;
                END LOOP;
                EXIT WHEN v_best IS NULL;
                v_take := least(v_left, l_rem[v_best] - l_held[v_best]);
                v_left := v_left - v_take;
                l_dirty[v_best] := true;
                IF mv.op = 'hold' THEN
                    l_held[v_best] := l_held[v_best] + v_take;
                    n_tx := n_tx || v_tx; n_ord := n_ord || (cardinality(n_tx))::smallint; n_acc := n_acc || p_ids[k];
                    n_lot := n_lot || l_id[v_best]; n_amount := n_amount || v_take;
                ELSE
                    l_rem[v_best] := l_rem[v_best] - v_take;
                    w_acc := w_acc || p_ids[k]; w_lot := w_lot || l_id[v_best]; w_tx := w_tx || v_tx;
                    w_amount := w_amount || v_take; w_undoes := w_undoes || NULL::bigint;
                END IF;
            END LOOP;
            IF v_left > 0 AND mv.op = 'hold' THEN
                n_tx := n_tx || v_tx; n_ord := n_ord || (cardinality(n_tx))::smallint; n_acc := n_acc || p_ids[k];
                n_lot := n_lot || NULL::bigint; n_amount := n_amount || v_left;
            ELSIF v_left > 0 THEN
                v_unc[k] := v_unc[k] + v_left;
                w_acc := w_acc || p_ids[k]; w_lot := w_lot || NULL::bigint; w_tx := w_tx || v_tx;
                w_amount := w_amount || v_left; w_undoes := w_undoes || NULL::bigint;
            END IF;
        END IF;
    END LOOP;
    -- Written at once: new lots, changed lots, uses, holds made and holds gone.
    WITH made AS (
        INSERT INTO lots (community_id, id, account_id, transaction_id, earned_at, expires_at,
                          amount, remaining, held)
        SELECT p_community, l.id, p_ids[l.slot], l.tx, l.earned, l.exp, l.amount, l.rem, l.held
          FROM unnest(l_id, l_slot, l_tx, l_earned, l_exp, l_amount, l_rem, l_held, l_new)
               AS l(id, slot, tx, earned, exp, amount, rem, held, new)
         WHERE l.new
    ), changed AS (
        UPDATE lots AS t SET remaining = l.rem, held = l.held
          FROM unnest(l_id, l_rem, l_held, l_dirty, l_new) AS l(id, rem, held, dirty, new)
         WHERE l.dirty AND NOT l.new AND t.community_id = p_community AND t.id = l.id
    ), gone AS (
        DELETE FROM lot_holds h
         WHERE cardinality(v_settled) > 0 AND h.community_id = p_community
           AND h.tx_id = ANY (v_settled)
    ), held AS (
        INSERT INTO lot_holds (community_id, tx_id, ord, account_id, lot_id, amount)
        SELECT p_community, h.tx, h.ord, h.acc, h.lot, h.amount
          FROM unnest(n_tx, n_ord, n_acc, n_lot, n_amount) AS h(tx, ord, acc, lot, amount)
    )
    INSERT INTO lot_uses (community_id, account_id, lot_id, tx_id, amount, undoes)
    SELECT p_community, u.acc, u.lot, u.tx, u.amount, u.undoes
      FROM unnest(w_acc, w_lot, w_tx, w_amount, w_undoes) AS u(acc, lot, tx, amount, undoes);
    RETURN v_unc;
END
$$;
