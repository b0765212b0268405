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

-- The ids of accounts, in the order given, opening accounts without limits on
-- first use. A member account that does not exist (members open theirs when they
-- join) gets a null id. Each address is one probe of the (community_id, address)
-- key: a join would let a generic plan scan `accounts`.
-- The writes of a JSON document (an array of `ledger_write` objects), as the
-- service sends them: asyncpg's binary encoding of composite arrays costs the
-- service far more than msgspec's JSON (docs/performance.md).
CREATE OR REPLACE FUNCTION ledger_writes(p_document jsonb)
RETURNS ledger_write[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(SELECT w FROM jsonb_populate_recordset(NULL::ledger_write, p_document) AS w)
$$;

CREATE OR REPLACE FUNCTION ledger_account_ids(p_community text, p_addrs text[], p_assets text[])
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    SELECT array_agg((SELECT acc.id FROM accounts acc
                       WHERE acc.community_id = p_community AND acc.address = a.addr)
                     ORDER BY a.ord)
      INTO v_ids
      FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord);
    IF NOT EXISTS (SELECT 1 FROM unnest(p_addrs, v_ids) AS a(addr, id)
                    WHERE a.id IS NULL AND a.addr NOT LIKE 'member:%') THEN
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
                       WHERE acc.community_id = p_community AND acc.address = a.addr)
                     ORDER BY a.ord)
      INTO v_ids
      FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord);
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
CREATE OR REPLACE FUNCTION ledger_write(
    p_community text, p_writes ledger_write[], p_skip_locked boolean DEFAULT false)
RETURNS SETOF ledger_written
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(p_writes), 0);
    w ledger_write;
    c ledger_account_change;
    -- The accounts of all writes, once each, sorted by address (byte-wise): their
    -- ids, whether this transaction holds their lock, their posted balance under
    -- the lock, and what they have available as the writes are decided.
    v_addr text[];
    v_asset text[];
    v_id bigint[];
    v_locked boolean[];
    v_posted bigint[];
    v_available bigint[];
    -- Per change (the writes' accounts, flattened): its account in the list above;
    -- per write, where its changes start.
    v_acct integer[];
    v_first integer[];
    -- Per write: the transaction under its client id (create) or its tx_id (post,
    -- void), read under the locks, and the previous write with the same key.
    v_found_id bigint[];
    v_found_hash bytea[];
    v_found_status text[];
    v_found_expires timestamptz[];
    v_prev integer[];
    v_finishing bigint[];  -- the pending transactions this transaction has locked
    -- What each write comes to.
    v_outcome text[] := array_fill(NULL::text, ARRAY[n]);
    v_failure jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    v_same integer[] := array_fill(NULL::integer, ARRAY[n]);
    v_tx bigint[];
    v_created integer;
    v_inserted integer;
    i integer := 0;
    j integer;
    k integer;
    p integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(d.address ORDER BY d.address COLLATE "C"),
           array_agg(d.asset ORDER BY d.address COLLATE "C")
      INTO v_addr, v_asset
      FROM (SELECT ch.address, min(ch.asset) AS asset
              FROM unnest(p_writes) AS x
             CROSS JOIN LATERAL unnest(x.accounts) AS ch
             GROUP BY ch.address) d;
    v_id := ledger_account_ids(p_community, v_addr, v_asset);
    IF EXISTS (SELECT 1 FROM unnest(p_writes) AS x WHERE x.op <> 'create') THEN
        IF p_skip_locked THEN
            SELECT array_agg(f.id) INTO v_finishing
              FROM (SELECT t.id FROM transactions t
                     WHERE t.community_id = p_community
                       AND t.id IN (SELECT x.tx_id FROM unnest(p_writes) AS x
                                     WHERE x.op <> 'create')
                     ORDER BY t.id
                       FOR UPDATE SKIP LOCKED) f;
        ELSE
            SELECT array_agg(f.id) INTO v_finishing
              FROM (SELECT t.id FROM transactions t
                     WHERE t.community_id = p_community
                       AND t.id IN (SELECT x.tx_id FROM unnest(p_writes) AS x
                                     WHERE x.op <> 'create')
                     ORDER BY t.id
                       FOR UPDATE) f;
        END IF;
    END IF;
    -- The member accounts, locked in address order (the sort runs below the lock).
    IF p_skip_locked THEN
        SELECT array_agg(l.id IS NOT NULL ORDER BY a.k), array_agg(l.posted ORDER BY a.k),
               array_agg(l.posted - l.held ORDER BY a.k)
          INTO v_locked, v_posted, v_available
          FROM unnest(v_id) WITH ORDINALITY AS a(id, k)
          LEFT JOIN (SELECT acc.id, acc.posted, acc.held FROM accounts acc
                      WHERE acc.community_id = p_community AND acc.id = ANY (v_id)
                        AND acc.member_id IS NOT NULL
                      ORDER BY acc.address COLLATE "C"
                        FOR UPDATE SKIP LOCKED) l ON l.id = a.id;
    ELSE
        SELECT array_agg(l.id IS NOT NULL ORDER BY a.k), array_agg(l.posted ORDER BY a.k),
               array_agg(l.posted - l.held ORDER BY a.k)
          INTO v_locked, v_posted, v_available
          FROM unnest(v_id) WITH ORDINALITY AS a(id, k)
          LEFT JOIN (SELECT acc.id, acc.posted, acc.held FROM accounts acc
                      WHERE acc.community_id = p_community AND acc.id = ANY (v_id)
                        AND acc.member_id IS NOT NULL
                      ORDER BY acc.address COLLATE "C"
                        FOR UPDATE) l ON l.id = a.id;
    END IF;
    SELECT array_agg(d.k ORDER BY x.g, ch.ord)
      INTO v_acct
      FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
     CROSS JOIN LATERAL unnest((x.w).accounts) WITH ORDINALITY
           AS ch(address, asset, member, posted, held, minimum, ord)
      JOIN unnest(v_addr) WITH ORDINALITY AS d(address, k) ON d.address = ch.address;
    SELECT array_agg(f.first ORDER BY f.g)
      INTO v_first
      FROM (SELECT x.g, (1 + coalesce(sum(cardinality((x.w).accounts)) OVER (
                             ORDER BY x.g ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                         0))::integer AS first
              FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x) f;
    -- What exists under each write's key, read after the locks (a statement of its
    -- own, so it sees what their holders committed). One probe of a key per write:
    -- a scalar subquery is never turned into a join, so no plan can scan instead.
    SELECT array_agg((f.t).id ORDER BY f.g), array_agg((f.t).request_hash ORDER BY f.g),
           array_agg((f.t).status ORDER BY f.g), array_agg((f.t).expires_at ORDER BY f.g),
           array_agg(f.prev ORDER BY f.g)
      INTO v_found_id, v_found_hash, v_found_status, v_found_expires, v_prev
      FROM (SELECT x.g,
                   CASE WHEN (x.w).op = 'create' THEN
                       (SELECT t FROM transactions t
                         WHERE t.community_id = p_community AND t.client_id = (x.w).client_id)
                   ELSE
                       (SELECT t FROM transactions t
                         WHERE t.community_id = p_community AND t.id = (x.w).tx_id)
                   END AS t,
                   lag(x.g) OVER (PARTITION BY (x.w).op = 'create',
                                  coalesce((x.w).client_id, (x.w).tx_id::text)
                                  ORDER BY x.g) AS prev
              FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x) f;
    -- Each write decided in turn.
    FOREACH w IN ARRAY p_writes LOOP
        i := i + 1;
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            k := v_acct[p];
            p := p + 1;
            IF v_id[k] IS NULL THEN
                v_outcome[i] := 'not_found';
                v_failure[i] := jsonb_build_object('address', c.address);
                EXIT;
            ELSIF c.member AND NOT v_locked[k] THEN
                v_outcome[i] := 'busy';
            END IF;
        END LOOP;
        IF w.op <> 'create' AND v_outcome[i] IS DISTINCT FROM 'not_found' THEN
            IF v_found_id[i] IS NULL THEN
                v_outcome[i] := 'not_found';
            ELSIF NOT v_found_id[i] = ANY (v_finishing) THEN
                v_outcome[i] := 'busy';
            END IF;
        END IF;
        CONTINUE WHEN v_outcome[i] IS NOT NULL;
        IF w.op = 'create' THEN
            j := v_prev[i];  -- an earlier write of these that created this client id
            WHILE j IS NOT NULL AND v_outcome[j] IS DISTINCT FROM 'created' LOOP
                j := v_prev[j];
            END LOOP;
            IF v_found_id[i] IS NOT NULL OR j IS NOT NULL THEN
                v_same[i] := j;
                v_outcome[i] := CASE
                    WHEN coalesce(v_found_hash[i], (p_writes[j]).request_hash) = w.request_hash
                    THEN 'replay' ELSE 'conflict' END;
                CONTINUE;
            END IF;
        ELSE
            j := v_prev[i];  -- an earlier write of these that finished this transaction
            WHILE j IS NOT NULL AND v_outcome[j] IS DISTINCT FROM 'done' LOOP
                j := v_prev[j];
            END LOOP;
            IF j IS NOT NULL OR v_found_status[i] <> 'pending' THEN
                v_outcome[i] := CASE WHEN j IS NULL THEN v_found_status[i]
                                     WHEN (p_writes[j]).op = 'post' THEN 'posted'
                                     ELSE 'voided' END;
                CONTINUE;
            END IF;
        END IF;
        IF w.op = 'post' AND v_found_expires[i] <= now() THEN
            v_outcome[i] := 'expired';
            CONTINUE;
        END IF;
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            k := v_acct[p];
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
        p := v_first[i];
        FOREACH c IN ARRAY w.accounts LOOP
            IF c.member THEN
                v_available[v_acct[p]] := v_available[v_acct[p]] + c.posted - c.held;
            END IF;
            p := p + 1;
        END LOOP;
        v_outcome[i] := CASE WHEN w.op = 'create' THEN 'created' ELSE 'done' END;
    END LOOP;
    -- The accepted writes, one statement per table. New transactions in write
    -- order, so that their ids follow it.
    v_created := cardinality(array_positions(v_outcome, 'created'));
    WITH inserted AS (
        INSERT INTO transactions AS t
            (community_id, client_id, request_hash, kind, status, pending_postings, memo,
             metadata, reason, rule_id, rule_version, event_id, actor, reversal_of,
             expires_at, finalized_at)
        SELECT p_community, (x.w).client_id, (x.w).request_hash, (x.w).kind,
               CASE WHEN (x.w).pending THEN 'pending' ELSE 'posted' END,
               CASE WHEN (x.w).pending THEN (x.w).reserved END, (x.w).memo, (x.w).metadata,
               (x.w).reason, (x.w).rule_id, (x.w).rule_version, (x.w).event_id, (x.w).actor,
               (x.w).reversal_of,
               now() + make_interval(secs => (x.w).ttl_s),
               CASE WHEN NOT (x.w).pending THEN now() END
          FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
         WHERE v_outcome[x.g] = 'created'
         ORDER BY x.g
        ON CONFLICT (community_id, client_id) DO NOTHING
        RETURNING t.id, t.client_id
    )
    SELECT array_agg(coalesce(r.id, v_found_id[x.g]) ORDER BY x.g)
      INTO v_tx
      FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
      LEFT JOIN inserted r ON v_outcome[x.g] = 'created' AND r.client_id = (x.w).client_id;
    SELECT count(*) INTO v_inserted
      FROM unnest(v_outcome, v_tx) AS o(outcome, tx)
     WHERE o.outcome = 'created' AND o.tx IS NOT NULL;
    IF v_inserted < v_created THEN
        RAISE EXCEPTION 'a concurrent transaction wrote a client id of this write'
            USING ERRCODE = 'serialization_failure';
    END IF;
    -- Entries of what is posted now, in (write, leg) order so that their sequence
    -- numbers follow it. A member entry's balance is the account's posted balance
    -- under the lock plus every leg up to it.
    INSERT INTO entries (community_id, tx_id, leg, account_id, amount, balance_after)
    SELECT p_community, v_tx[l.g], l.leg, v_id[l.k], l.amount,
           CASE WHEN l.member THEN
               v_posted[l.k] + sum(l.amount) OVER (PARTITION BY l.k ORDER BY l.g, l.leg)
           END
      FROM (SELECT x.g, (lg.ord - 1)::smallint AS leg, lg.amount,
                   v_acct[v_first[x.g] + lg.account - 1] AS k,
                   ((x.w).accounts[lg.account]).member AS member
              FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
             CROSS JOIN LATERAL unnest((x.w).legs) WITH ORDINALITY AS lg(account, amount, ord)
             WHERE (v_outcome[x.g] = 'created' AND NOT (x.w).pending)
                OR (v_outcome[x.g] = 'done' AND (x.w).op = 'post')) l
     ORDER BY l.g, l.leg;
    UPDATE accounts AS a
       SET posted = a.posted + s.posted, held = a.held + s.held
      FROM (SELECT v_id[v_acct[v_first[x.g] + ch.ord - 1]] AS id,
                   sum(ch.posted)::bigint AS posted, sum(ch.held)::bigint AS held
              FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
             CROSS JOIN LATERAL unnest((x.w).accounts) WITH ORDINALITY
                   AS ch(address, asset, member, posted, held, minimum, ord)
             WHERE v_outcome[x.g] IN ('created', 'done') AND ch.member
             GROUP BY 1) s
     WHERE a.community_id = p_community AND a.id = s.id;
    UPDATE transactions AS t
       SET status = CASE WHEN (x.w).op = 'post' THEN 'posted' ELSE 'voided' END,
           finalized_at = now(), void_reason = (x.w).void_reason
      FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
     WHERE v_outcome[x.g] = 'done' AND t.community_id = p_community AND t.id = (x.w).tx_id;
    INSERT INTO seal_queue (community_id, tx_id)
    SELECT p_community, v_tx[x.g]
      FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
     WHERE v_outcome[x.g] = 'done' OR (v_outcome[x.g] = 'created' AND NOT (x.w).pending)
     ORDER BY x.g;
    RETURN QUERY
        SELECT x.g, v_outcome[x.g], coalesce(v_tx[x.g], v_tx[v_same[x.g]]),
               CASE WHEN v_outcome[x.g] = 'created' THEN now() END,
               CASE WHEN v_outcome[x.g] = 'created' THEN now() + make_interval(secs => (x.w).ttl_s) END,
               CASE WHEN v_outcome[x.g] = 'done'
                      OR (v_outcome[x.g] = 'created' AND NOT (x.w).pending) THEN now() END,
               v_failure[x.g]
          FROM (SELECT unnest(p_writes) AS w, generate_series(1, n) AS g) x
         ORDER BY x.g;
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
           sha256(convert_to(jsonb_build_array(
               t.id, t.client_id, encode(t.request_hash, 'hex'), t.kind, t.status,
               t.pending_postings, t.memo, t.metadata, t.reason, t.rule_id, t.rule_version,
               t.event_id, t.actor, t.reversal_of,
               (extract(epoch FROM t.created_at) * 1000000)::bigint,
               (extract(epoch FROM t.expires_at) * 1000000)::bigint,
               (extract(epoch FROM t.finalized_at) * 1000000)::bigint,
               t.void_reason, l.legs)::text, 'UTF8'))
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
    SELECT array_agg(q.tx_id ORDER BY q.xid, q.tx_id) INTO v_txs
      FROM (SELECT q.tx_id, q.xid
              FROM seal_queue q
             WHERE q.community_id = p_community
               AND q.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY q.xid, q.tx_id
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
