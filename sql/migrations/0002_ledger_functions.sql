-- The ledger's write path as server-side functions, so that a request (or a batch
-- of them) is one round trip. The service computes each transaction's plan in pure
-- Python: which accounts, in lock order (sorted by address), the net change of each,
-- and the lowest `posted - held` each may be left at. These functions resolve the
-- accounts, lock the member accounts in that order, check the limits under the
-- locks, and append the entries.
--
-- Expected refusals (unknown member, insufficient balance, a duplicate client id)
-- are returned, not raised, and leave nothing behind: a transaction that fails
-- after changing some balances undoes them itself. So a batch needs no
-- subtransactions, and one failing item does not abort the others.

-- The ids of accounts, in the order given, opening accounts without limits on first
-- use. A member account that does not exist (members open theirs when they join)
-- gets a null id.
CREATE FUNCTION ledger_account_ids(p_community text, p_addrs text[], p_assets text[])
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_unopened boolean;
BEGIN
    SELECT array_agg(acc.id ORDER BY a.ord),
           coalesce(bool_or(acc.id IS NULL AND a.addr NOT LIKE 'member:%'), false)
      INTO v_ids, v_unopened
      FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord)
      LEFT JOIN accounts acc ON acc.community_id = p_community AND acc.address = a.addr;
    IF NOT v_unopened THEN
        RETURN v_ids;
    END IF;
    INSERT INTO accounts (community_id, address, asset)
    SELECT DISTINCT p_community, a.addr, a.asset
      FROM unnest(p_addrs, p_assets) AS a(addr, asset)
     WHERE a.addr NOT LIKE 'member:%'
     ORDER BY a.addr
    ON CONFLICT (community_id, address) DO NOTHING;
    SELECT array_agg(acc.id ORDER BY a.ord) INTO v_ids
      FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord)
      LEFT JOIN accounts acc ON acc.community_id = p_community AND acc.address = a.addr;
    RETURN v_ids;
END
$$;

-- Takes back balance changes this transaction made (its locks are still held).
CREATE FUNCTION ledger_undo_balances(
    p_community text, p_ids bigint[], p_member boolean[], p_posted bigint[], p_held bigint[])
RETURNS void
LANGUAGE sql AS $$
    UPDATE accounts a
       SET posted = a.posted - c.posted, held = a.held - c.held
      FROM unnest(p_ids, p_member, p_posted, p_held) AS c(id, member, posted, held)
     WHERE a.community_id = p_community AND a.id = c.id AND c.member;
$$;

-- Changes member balances in the order given: posted += p_posted[i], held +=
-- p_held[i]. A change that lowers what is available (posted - held) must leave it
-- >= p_min[i]. Returns each account's posted balance after the change (null for
-- accounts without limits, which are never locked or updated here); when a limit
-- would break, undoes what it changed and returns the failure instead. With
-- p_skip_locked, a member row locked by another transaction is a failure too
-- ({"busy": true}) rather than a wait.
CREATE FUNCTION ledger_change_balances(
    p_community text, p_ids bigint[], p_member boolean[],
    p_posted bigint[], p_held bigint[], p_min bigint[], p_skip_locked boolean,
    OUT posted_after bigint[], OUT failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_ids, 1), 0);
    v_posted bigint;
    v_available bigint;
    v_address text;
    i integer;
BEGIN
    posted_after := array_fill(NULL::bigint, ARRAY[n]);
    FOR i IN 1..n LOOP
        CONTINUE WHEN NOT p_member[i];
        -- In a group commit, a member locked by another transaction must not make
        -- the whole group wait: the sub-select skips it, and it is reported busy;
        -- the caller then writes it on its own.
        UPDATE accounts
           SET posted = posted + p_posted[i], held = held + p_held[i]
         WHERE community_id = p_community AND id = p_ids[i]
           AND (p_posted[i] - p_held[i] >= 0 OR p_min[i] IS NULL
                OR posted + p_posted[i] - held - p_held[i] >= p_min[i])
           AND (NOT p_skip_locked
                OR id = (SELECT x.id FROM accounts x
                          WHERE x.community_id = p_community AND x.id = p_ids[i]
                            FOR UPDATE SKIP LOCKED))
        RETURNING posted INTO v_posted;
        IF NOT FOUND THEN
            PERFORM ledger_undo_balances(p_community, p_ids[1:i - 1], p_member[1:i - 1],
                                         p_posted[1:i - 1], p_held[1:i - 1]);
            posted_after := NULL;
            SELECT address, posted - held INTO v_address, v_available
              FROM accounts WHERE community_id = p_community AND id = p_ids[i];
            -- Skipping a locked row also ends here; if the change fits what is
            -- committed now, the row was merely busy (and may be free already).
            IF p_skip_locked AND (p_posted[i] - p_held[i] >= 0 OR p_min[i] IS NULL
                                  OR v_available + p_posted[i] - p_held[i] >= p_min[i]) THEN
                failure := jsonb_build_object('busy', true);
                RETURN;
            END IF;
            failure := jsonb_build_object('address', v_address, 'available', v_available,
                                          'minimum', p_min[i], 'change', p_posted[i] - p_held[i]);
            RETURN;
        END IF;
        posted_after[i] := v_posted;
    END LOOP;
END
$$;

-- Appends a transaction's entries: leg k (k = 0, 1, …) moves p_leg_amount[k+1] on
-- account p_leg_acct[k+1]. Member entries carry their exact running balance.
CREATE FUNCTION ledger_append_entries(
    p_community text, p_tx_id bigint, p_ids bigint[], p_member boolean[],
    p_posted bigint[], p_posted_after bigint[], p_leg_acct integer[], p_leg_amount bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n_legs integer := coalesce(array_length(p_leg_acct, 1), 0);
    v_running bigint[] := p_posted_after;
    v_leg_after bigint[] := array_fill(NULL::bigint, ARRAY[n_legs]);
    i integer;
    a integer;
BEGIN
    FOR i IN 1..coalesce(array_length(p_ids, 1), 0) LOOP
        v_running[i] := p_posted_after[i] - p_posted[i];
    END LOOP;
    FOR i IN 1..n_legs LOOP
        a := p_leg_acct[i];
        IF p_member[a] THEN
            v_running[a] := v_running[a] + p_leg_amount[i];
            v_leg_after[i] := v_running[a];
        END IF;
    END LOOP;
    INSERT INTO entries (community_id, tx_id, leg, account_id, amount, balance_after)
    SELECT p_community, p_tx_id, (l.ord - 1)::smallint, p_ids[l.acct], l.amount, l.after
      FROM unnest(p_leg_acct, p_leg_amount, v_leg_after) WITH ORDINALITY AS l(acct, amount, after, ord)
     ORDER BY l.ord;
END
$$;

-- Creates one transaction, posted or pending, idempotently by client id.
-- outcome: 'created'; 'replay' or 'conflict' (the client id exists with the same or
-- another request); 'not_found' (failure names the account); 'insufficient';
-- 'busy' (p_skip_locked and a member account is locked elsewhere; nothing written).
CREATE FUNCTION ledger_create_one(
    p_community text, p_client_id text, p_hash bytea, p_kind text, p_pending boolean,
    p_reserved jsonb, p_memo text, p_metadata jsonb, p_reason text,
    p_rule_id text, p_rule_version integer, p_event_id text, p_actor text,
    p_reversal_of bigint, p_ttl_s bigint,
    p_addrs text[], p_ids bigint[], p_member boolean[],
    p_posted bigint[], p_held bigint[], p_min bigint[],
    p_leg_acct integer[], p_leg_amount bigint[], p_skip_locked boolean,
    OUT outcome text, OUT tx_id bigint, OUT created_at timestamptz,
    OUT expires_at timestamptz, OUT failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[] := p_ids;
    v_missing integer := array_position(p_ids, NULL);
    v_after bigint[];
BEGIN
    IF v_missing IS NOT NULL THEN
        outcome := 'not_found';
        failure := jsonb_build_object('address', p_addrs[v_missing]);
        RETURN;
    END IF;
    SELECT c.posted_after, c.failure INTO v_after, failure
      FROM ledger_change_balances(p_community, v_ids, p_member, p_posted, p_held, p_min,
                                  p_skip_locked) c;
    IF failure ? 'busy' THEN
        outcome := 'busy';
        RETURN;
    END IF;
    IF failure IS NULL THEN
        INSERT INTO transactions AS t
            (community_id, client_id, request_hash, kind, status, pending_postings, memo,
             metadata, reason, rule_id, rule_version, event_id, actor, reversal_of,
             expires_at, finalized_at)
        VALUES (p_community, p_client_id, p_hash, p_kind,
                CASE WHEN p_pending THEN 'pending' ELSE 'posted' END,
                p_reserved, p_memo, p_metadata, p_reason, p_rule_id, p_rule_version,
                p_event_id, p_actor, p_reversal_of,
                CASE WHEN p_ttl_s IS NOT NULL THEN now() + make_interval(secs => p_ttl_s) END,
                CASE WHEN NOT p_pending THEN now() END)
        ON CONFLICT (community_id, client_id) DO NOTHING
        RETURNING t.id, t.created_at, t.expires_at INTO tx_id, created_at, expires_at;
        IF FOUND THEN
            IF NOT p_pending THEN
                PERFORM ledger_append_entries(p_community, tx_id, v_ids, p_member, p_posted,
                                              v_after, p_leg_acct, p_leg_amount);
                INSERT INTO seal_queue (community_id, tx_id) VALUES (p_community, tx_id);
            END IF;
            outcome := 'created';
            RETURN;
        END IF;
        PERFORM ledger_undo_balances(p_community, v_ids, p_member, p_posted, p_held);
    END IF;
    -- The client id exists (a concurrent duplicate that committed first also looks,
    -- from here, like a spent balance): report the replay or the conflict.
    SELECT t.id, CASE WHEN t.request_hash = p_hash THEN 'replay' ELSE 'conflict' END
      INTO tx_id, outcome
      FROM transactions t
     WHERE t.community_id = p_community AND t.client_id = p_client_id;
    IF FOUND THEN
        failure := NULL;
    ELSE
        outcome := 'insufficient';
    END IF;
END
$$;

-- Creates many transactions in one round trip, each on its own: item i's accounts
-- are p_addrs[p_acct_end[i-1]+1 : p_acct_end[i]] (and the parallel arrays), its legs
-- p_leg_*[p_leg_end[i-1]+1 : p_leg_end[i]], with leg account numbers relative to
-- the item's accounts. JSON values arrive as text (a jsonb[] parameter cannot
-- carry JSON arrays unambiguously). One row per item, in order.
CREATE FUNCTION ledger_create_batch(
    p_community text, p_client_ids text[], p_hashes bytea[], p_kinds text[],
    p_pendings boolean[], p_reserved text[], p_memos text[], p_metadata text[],
    p_reasons text[], p_rule_ids text[], p_rule_versions integer[], p_event_ids text[],
    p_actors text[], p_reversal_ofs bigint[], p_ttls bigint[],
    p_acct_end integer[], p_leg_end integer[],
    p_addrs text[], p_assets text[], p_member boolean[],
    p_posted bigint[], p_held bigint[], p_min bigint[],
    p_leg_acct integer[], p_leg_amount bigint[], p_skip_locked boolean)
RETURNS TABLE (idx integer, outcome text, tx_id bigint, created_at timestamptz,
               expires_at timestamptz, failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    a0 integer := 1;
    l0 integer := 1;
    a1 integer;
    l1 integer;
    r record;
    v_ids bigint[] := ledger_account_ids(p_community, p_addrs, p_assets);
BEGIN
    IF NOT p_skip_locked AND coalesce(array_length(p_client_ids, 1), 0) > 1 THEN
        -- Items lock members in their own order; two batches at once could then
        -- deadlock. Lock every member account of the batch up front, in address
        -- order like every other writer, and the items need not wait again.
        PERFORM 1 FROM accounts
          WHERE community_id = p_community AND member_id IS NOT NULL
            AND address = ANY (p_addrs)
          ORDER BY address
            FOR UPDATE;
    END IF;
    FOR i IN 1..coalesce(array_length(p_client_ids, 1), 0) LOOP
        a1 := p_acct_end[i];
        l1 := p_leg_end[i];
        SELECT * INTO r
          FROM ledger_create_one(
                   p_community, p_client_ids[i], p_hashes[i], p_kinds[i], p_pendings[i],
                   p_reserved[i]::jsonb, p_memos[i], p_metadata[i]::jsonb, p_reasons[i], p_rule_ids[i],
                   p_rule_versions[i], p_event_ids[i], p_actors[i], p_reversal_ofs[i],
                   p_ttls[i], p_addrs[a0:a1], v_ids[a0:a1], p_member[a0:a1],
                   p_posted[a0:a1], p_held[a0:a1], p_min[a0:a1],
                   p_leg_acct[l0:l1], p_leg_amount[l0:l1], p_skip_locked);
        idx := i;
        outcome := r.outcome;
        tx_id := r.tx_id;
        created_at := r.created_at;
        expires_at := r.expires_at;
        failure := r.failure;
        RETURN NEXT;
        a0 := a1 + 1;
        l0 := l1 + 1;
    END LOOP;
END
$$;

-- Posts or voids a pending transaction. outcome: 'done', 'not_found', 'expired',
-- or the status it already had ('posted', 'voided').
CREATE FUNCTION ledger_finish_tx(
    p_community text, p_tx_id bigint, p_status text, p_void_reason text,
    p_addrs text[], p_assets text[], p_member boolean[],
    p_posted bigint[], p_held bigint[],
    p_leg_acct integer[], p_leg_amount bigint[],
    OUT outcome text, OUT finalized_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_expires_at timestamptz;
    v_ids bigint[];
    v_after bigint[];
    v_failure jsonb;
BEGIN
    SELECT t.status, t.expires_at INTO v_status, v_expires_at
      FROM transactions t
     WHERE t.community_id = p_community AND t.id = p_tx_id
       FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;
    IF v_status <> 'pending' THEN
        outcome := v_status;
        RETURN;
    END IF;
    IF p_status = 'posted' AND v_expires_at IS NOT NULL AND v_expires_at <= now() THEN
        outcome := 'expired';
        RETURN;
    END IF;
    v_ids := ledger_account_ids(p_community, p_addrs, p_assets);
    -- Posting what was held, or releasing it, never lowers what is available.
    SELECT c.posted_after, c.failure INTO v_after, v_failure
      FROM ledger_change_balances(p_community, v_ids, p_member, p_posted, p_held,
                                  array_fill(NULL::bigint, ARRAY[cardinality(v_ids)]),
                                  false) c;
    IF p_status = 'posted' THEN
        PERFORM ledger_append_entries(p_community, p_tx_id, v_ids, p_member, p_posted,
                                      v_after, p_leg_acct, p_leg_amount);
    END IF;
    UPDATE transactions AS t
       SET status = p_status, finalized_at = now(), void_reason = p_void_reason
     WHERE t.community_id = p_community AND t.id = p_tx_id
    RETURNING t.finalized_at INTO finalized_at;
    INSERT INTO seal_queue (community_id, tx_id) VALUES (p_community, p_tx_id);
    outcome := 'done';
END
$$;

-- The digests of final transactions, in the order given: everything about each
-- that must never change. Set-based, so sealing thousands costs a few statements.
CREATE FUNCTION ledger_tx_digests(p_community text, p_tx_ids bigint[])
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
CREATE FUNCTION ledger_seal(p_community text, p_limit integer)
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
CREATE FUNCTION ledger_verify_chain(p_community text)
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
