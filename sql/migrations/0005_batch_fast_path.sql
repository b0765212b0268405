-- A set-based fast path for explicit batches (transactions:batch, several rule
-- postings of one event).
--
-- ledger_create_batch (0002) writes each item with ledger_create_one: a dozen
-- PL/pgSQL statements per item, 0.2-0.5 ms of the server per item. An explicit batch
-- locks all its member accounts up front, so under those locks the outcome of a
-- leading run of items is known before anything is written: an item is created
-- for sure when its accounts exist, its client id is new (in the table and
-- earlier in the batch), and every limit holds with all the items before it
-- applied. That run is written with one statement per table; the first item that
-- is not sure, and every item after it, go through ledger_create_one as before.
-- The effects are the same row for row: transaction ids and entry sequence
-- numbers follow item order, and each member entry's `balance_after` is the
-- account's posted balance after that leg, as ledger_append_entries computes it.
--
-- A group commit (p_skip_locked) never waits for a member account: it locks
-- those no one else holds, and takes the fast path only when that is all of them.
-- Single writes keep the item-by-item path.

-- For item end offsets (p_acct_end or p_leg_end of ledger_create_batch), the
-- item each position belongs to: {2, 3, 5} -> {1, 1, 2, 3, 3}.
CREATE FUNCTION ledger_batch_item_of(p_end integer[])
RETURNS integer[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(e.item ORDER BY e.item, g.pos), '{}')
      FROM unnest(p_end) WITH ORDINALITY AS e(last, item),
           generate_series(coalesce(p_end[e.item::integer - 1], 0) + 1, e.last) AS g(pos)
$$;

-- The first item of a batch that the fast path cannot take (cardinality + 1 if
-- none): an account that does not exist (a member who has not joined), a client
-- id already written or used by an earlier item of the batch (a replay or a
-- conflict), or a change that lowers what a member account has available
-- (posted - held) below its minimum once every earlier item is applied, the rule
-- of ledger_change_balances. The caller holds the locks of every member account
-- of the batch and passes what they hold (p_locked_*).
CREATE FUNCTION ledger_batch_first_unsure(
    p_community text, p_client_ids text[], p_acct_item integer[], p_ids bigint[],
    p_member boolean[], p_posted bigint[], p_held bigint[], p_min bigint[],
    p_locked_ids bigint[], p_locked_posted bigint[], p_locked_held bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_first integer := cardinality(p_client_ids) + 1;
    v_item integer;
BEGIN
    -- (A member account the up-front lock did not find cannot happen: members'
    -- accounts are opened with them. Were it so, the items would go one by one.)
    SELECT min(c.item) INTO v_item
      FROM unnest(p_acct_item, p_ids, p_member) AS c(item, id, member)
      LEFT JOIN unnest(p_locked_ids) AS l(id) ON l.id = c.id
     WHERE c.id IS NULL OR (c.member AND l.id IS NULL);
    v_first := least(v_first, v_item);
    SELECT min(d.item) INTO v_item
      FROM (SELECT u.item, row_number() OVER (PARTITION BY u.client_id ORDER BY u.item) AS nth
              FROM unnest(p_client_ids) WITH ORDINALITY AS u(client_id, item)) d
     WHERE d.nth > 1;
    v_first := least(v_first, v_item);
    -- One probe of the client id key per item: a scalar subquery is never turned
    -- into a join, so no plan (generic, or made before the table had statistics)
    -- can scan the table instead.
    SELECT min(u.item) INTO v_item
      FROM unnest(p_client_ids) WITH ORDINALITY AS u(client_id, item)
     WHERE (SELECT true FROM transactions t
             WHERE t.community_id = p_community AND t.client_id = u.client_id);
    v_first := least(v_first, v_item);
    SELECT min(r.item) INTO v_item
      FROM (SELECT c.item, c.posted - c.held AS change, c.minimum,
                   a.posted - a.held
                     + sum(c.posted - c.held) OVER (PARTITION BY c.id ORDER BY c.item) AS available
              FROM unnest(p_acct_item, p_ids, p_member, p_posted, p_held, p_min)
                     AS c(item, id, member, posted, held, minimum)
              JOIN unnest(p_locked_ids, p_locked_posted, p_locked_held) AS a(id, posted, held)
                ON a.id = c.id
             WHERE c.member AND c.item < v_first) r
     WHERE r.change < 0 AND r.minimum IS NOT NULL AND r.available < r.minimum;
    RETURN least(v_first, v_item);
END
$$;

-- Writes the rows of items 1 … p_count of a batch at once, each as
-- ledger_create_one would have: the caller has made sure
-- (ledger_batch_first_unsure, under the locks) that each of them is created, and
-- changes the balances afterwards (ledger_batch_apply). A client id that a
-- concurrent transaction committed in between raises unique_violation, and so
-- does anything else a unique key refuses; the caller then takes the items one by
-- one, where the same thing happens as before this fast path existed.
CREATE FUNCTION ledger_batch_write(
    p_community text, p_count integer, p_client_ids text[], p_hashes bytea[], p_kinds text[],
    p_pendings boolean[], p_reserved text[], p_memos text[], p_metadata text[],
    p_reasons text[], p_rule_ids text[], p_rule_versions integer[], p_event_ids text[],
    p_actors text[], p_reversal_ofs bigint[], p_ttls bigint[],
    p_acct_end integer[], p_leg_end integer[], p_acct_item integer[], p_leg_item integer[],
    p_ids bigint[], p_member boolean[], p_posted bigint[], p_held bigint[],
    p_leg_acct integer[], p_leg_amount bigint[],
    p_locked_ids bigint[], p_locked_posted bigint[])
RETURNS TABLE (idx integer, outcome text, tx_id bigint, created_at timestamptz,
               expires_at timestamptz, failure jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint[];
    v_created timestamptz[];
    v_expires timestamptz[];
BEGIN
    -- Inserted in item order, so ids follow it; matched back by client id.
    WITH inserted AS (
        INSERT INTO transactions AS t
            (community_id, client_id, request_hash, kind, status, pending_postings, memo,
             metadata, reason, rule_id, rule_version, event_id, actor, reversal_of,
             expires_at, finalized_at)
        SELECT p_community, x.client_id, x.hash, x.kind,
               CASE WHEN x.pending THEN 'pending' ELSE 'posted' END,
               x.reserved::jsonb, x.memo, x.metadata::jsonb, x.reason, x.rule_id,
               x.rule_version, x.event_id, x.actor, x.reversal_of,
               CASE WHEN x.ttl_s IS NOT NULL THEN now() + make_interval(secs => x.ttl_s) END,
               CASE WHEN NOT x.pending THEN now() END
          FROM unnest(p_client_ids, p_hashes, p_kinds, p_pendings, p_reserved, p_memos,
                      p_metadata, p_reasons, p_rule_ids, p_rule_versions, p_event_ids,
                      p_actors, p_reversal_ofs, p_ttls)
                 WITH ORDINALITY AS x(client_id, hash, kind, pending, reserved, memo, metadata,
                                      reason, rule_id, rule_version, event_id, actor,
                                      reversal_of, ttl_s, item)
         WHERE x.item <= p_count
         ORDER BY x.item
        RETURNING t.id, t.client_id, t.created_at, t.expires_at
    )
    SELECT array_agg(i.id ORDER BY u.item), array_agg(i.created_at ORDER BY u.item),
           array_agg(i.expires_at ORDER BY u.item)
      INTO v_tx, v_created, v_expires
      FROM inserted i
      JOIN unnest(p_client_ids) WITH ORDINALITY AS u(client_id, item) ON u.client_id = i.client_id
     WHERE u.item <= p_count;
    -- Entries of posted items, in (item, leg) order so that their sequence numbers
    -- follow it. A member entry's balance is the account's posted balance under
    -- the lock, before the batch, plus every leg of the batch up to it.
    INSERT INTO entries (community_id, tx_id, leg, account_id, amount, balance_after)
    SELECT p_community, v_tx[l.item], l.leg, l.account_id, l.amount,
           CASE WHEN l.member THEN
               m.posted + sum(l.amount) OVER (PARTITION BY l.account_id ORDER BY l.ord)
           END
      FROM (SELECT g.item, g.amount, g.ord,
                   (g.ord - coalesce(p_leg_end[g.item - 1], 0) - 1)::smallint AS leg,
                   p_ids[coalesce(p_acct_end[g.item - 1], 0) + g.acct] AS account_id,
                   p_member[coalesce(p_acct_end[g.item - 1], 0) + g.acct] AS member
              FROM unnest(p_leg_item, p_leg_acct, p_leg_amount)
                     WITH ORDINALITY AS g(item, acct, amount, ord)
             WHERE g.item <= p_count AND NOT p_pendings[g.item]) l
      LEFT JOIN unnest(p_locked_ids, p_locked_posted) AS m(id, posted)
             ON l.member AND m.id = l.account_id
     ORDER BY l.ord;
    INSERT INTO seal_queue (community_id, tx_id)
    SELECT p_community, v_tx[s.item]
      FROM generate_series(1, p_count) AS s(item)
     WHERE NOT p_pendings[s.item];
    RETURN QUERY
        SELECT s.item, 'created'::text, v_tx[s.item], v_created[s.item], v_expires[s.item],
               NULL::jsonb
          FROM generate_series(1, p_count) AS s(item)
         ORDER BY s.item;
END
$$;

-- The balance changes of items 1 … p_count of a batch, summed per member account.
-- The caller runs it outside the fast path's subtransaction: a row locked by a
-- transaction and updated by its subtransaction would need a MultiXact each.
CREATE FUNCTION ledger_batch_apply(
    p_community text, p_count integer, p_acct_item integer[], p_ids bigint[],
    p_member boolean[], p_posted bigint[], p_held bigint[])
RETURNS void
LANGUAGE sql AS $$
    UPDATE accounts AS a
       SET posted = a.posted + c.posted, held = a.held + c.held
      FROM (SELECT u.id, sum(u.posted)::bigint AS posted, sum(u.held)::bigint AS held
              FROM unnest(p_acct_item, p_ids, p_member, p_posted, p_held)
                     AS u(item, id, member, posted, held)
             WHERE u.item <= p_count AND u.member
             GROUP BY u.id) c
     WHERE a.community_id = p_community AND a.id = c.id;
$$;

-- As in 0002, with the fast path in front of the item-by-item loop.
CREATE OR REPLACE FUNCTION ledger_create_batch(
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
    n integer := coalesce(array_length(p_client_ids, 1), 0);
    v_sure integer := 0;
    a0 integer := 1;
    l0 integer := 1;
    a1 integer;
    l1 integer;
    r record;
    v_ids bigint[] := ledger_account_ids(p_community, p_addrs, p_assets);
    v_acct_item integer[];
    v_locked_ids bigint[];
    v_locked_posted bigint[];
    v_locked_held bigint[];
    v_all_locked boolean := false;
BEGIN
    IF n > 1 AND NOT p_skip_locked THEN
        -- Items lock members in their own order; two batches at once could then
        -- deadlock. Lock every member account of the batch up front, in address
        -- order like every other writer, and the items need not wait again. What
        -- the locked rows hold now cannot change before this transaction ends.
        -- A FOR UPDATE subquery is never flattened: each address is one probe of
        -- the (community_id, address) key, in the order of the sorted addresses.
        -- Sorted byte-wise (COLLATE "C"), as the service sorts them for single
        -- writes: under a linguistic collation the two orders differ, and a batch
        -- and a single write could deadlock.
        SELECT array_agg(l.id), array_agg(l.posted), array_agg(l.held)
          INTO v_locked_ids, v_locked_posted, v_locked_held
          FROM (SELECT u.addr FROM unnest(p_addrs) AS u(addr)
                 WHERE u.addr LIKE 'member:%'
                 GROUP BY u.addr ORDER BY u.addr COLLATE "C") u
         CROSS JOIN LATERAL
               (SELECT a.id, a.posted, a.held FROM accounts a
                 WHERE a.community_id = p_community AND a.address = u.addr
                   AND a.member_id IS NOT NULL
                   FOR UPDATE) l;
        v_all_locked := true;
    ELSIF n > 1 THEN
        -- A group commit waits for no one: lock the member accounts no other
        -- transaction holds. If that is all of them (the common case), the group
        -- is as sure as a batch; if not, its items take the item-by-item path,
        -- where only those touching a held account come back busy.
        SELECT array_agg(l.id), array_agg(l.posted), array_agg(l.held)
          INTO v_locked_ids, v_locked_posted, v_locked_held
          FROM (SELECT u.addr FROM unnest(p_addrs) AS u(addr)
                 WHERE u.addr LIKE 'member:%'
                 GROUP BY u.addr ORDER BY u.addr COLLATE "C") u
         CROSS JOIN LATERAL
               (SELECT a.id, a.posted, a.held FROM accounts a
                 WHERE a.community_id = p_community AND a.address = u.addr
                   AND a.member_id IS NOT NULL
                   FOR UPDATE SKIP LOCKED) l;
        SELECT count(DISTINCT u.id) = coalesce(cardinality(v_locked_ids), 0)
          INTO v_all_locked
          FROM unnest(v_ids, p_member) AS u(id, member)
         WHERE u.member AND u.id IS NOT NULL;
    END IF;
    IF v_all_locked THEN
        v_acct_item := ledger_batch_item_of(p_acct_end);
        v_sure := ledger_batch_first_unsure(p_community, p_client_ids, v_acct_item, v_ids,
                                            p_member, p_posted, p_held, p_min, v_locked_ids,
                                            v_locked_posted, v_locked_held) - 1;
    END IF;
    IF v_sure >= 2 THEN
        BEGIN
            RETURN QUERY
                SELECT * FROM ledger_batch_write(
                    p_community, v_sure, p_client_ids, p_hashes, p_kinds, p_pendings,
                    p_reserved, p_memos, p_metadata, p_reasons, p_rule_ids, p_rule_versions,
                    p_event_ids, p_actors, p_reversal_ofs, p_ttls, p_acct_end, p_leg_end,
                    v_acct_item, ledger_batch_item_of(p_leg_end), v_ids, p_member,
                    p_posted, p_held, p_leg_acct, p_leg_amount, v_locked_ids, v_locked_posted);
        EXCEPTION WHEN unique_violation THEN
            v_sure := 0;  -- nothing of the fast path is left: take every item alone
        END;
    ELSE
        v_sure := 0;
    END IF;
    IF v_sure > 0 THEN
        PERFORM ledger_batch_apply(p_community, v_sure, v_acct_item, v_ids, p_member,
                                   p_posted, p_held);
        a0 := p_acct_end[v_sure] + 1;
        l0 := p_leg_end[v_sure] + 1;
    END IF;
    FOR i IN v_sure + 1..n LOOP
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

-- The arrays of ledger_create_batch as the service sends them: one JSON document
-- unpacked by jsonb_populate_record. asyncpg's binary array encoding costs about
-- 0.3 µs of Python per element (10 ms for a thousand transfers, 31,000
-- elements); the document costs well under a millisecond to write and about 5 ms
-- of PostgreSQL's time to unpack, before any lock is taken.
CREATE TYPE ledger_batch AS (
    client_ids text[], hashes bytea[], kinds text[], pendings boolean[], reserved text[],
    memos text[], metadata text[], reasons text[], rule_ids text[], rule_versions integer[],
    event_ids text[], actors text[], reversal_ofs bigint[], ttls bigint[],
    acct_end integer[], leg_end integer[], addrs text[], assets text[], member boolean[],
    posted bigint[], held bigint[], min bigint[], leg_acct integer[], leg_amount bigint[]
);
