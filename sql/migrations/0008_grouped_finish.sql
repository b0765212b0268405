-- Group commit for posts and voids of pending transactions.
--
-- Until now each `/post` and `/void` called ledger_finish_tx (0002) in its own
-- commit, while concurrent creations share theirs (ledger_create_batch with
-- p_skip_locked). ledger_finish_batch finishes many pending transactions in one
-- call and one commit, each item applied or refused on its own, with
-- ledger_finish_tx's outcomes (done, not_found, expired, posted, voided) plus
-- 'busy'.
--
-- A group never waits for a lock. For each item it first takes, without
-- waiting, the locks ledger_finish_tx would wait for: the transaction's row,
-- then (if it is still pending) its member accounts in address order, byte-wise
-- (COLLATE "C", as the service's sorted() and every other writer order them),
-- minutes before points. If another transaction holds any of them the item comes
-- back 'busy' with nothing written, and the service finishes it alone, in its
-- own transaction, where it may wait. Otherwise the item is handed to
-- ledger_finish_tx itself, whose own locks are then already held and cannot
-- make it wait; the logic of a finish stays in one place.
--
-- Why no deadlock is possible between groups, single writers (creations, single
-- finishes, events and rule jobs under member_lock, batches), the expiry job and
-- other groups: a deadlock is a cycle of transactions each waiting for the next.
-- A group is never a waiter:
-- - its row locks are FOR UPDATE SKIP LOCKED, at least as strong as what
--   ledger_finish_tx then takes on the same rows (FOR UPDATE on the transaction,
--   UPDATE on the member accounts), so inside ledger_finish_tx they are held
--   already;
-- - everything ledger_finish_tx then writes is a row it holds (the transaction,
--   its member accounts) or a new row of a key no one else writes: the entries
--   and the seal queue row of a transaction are written only by whoever finishes
--   it, which takes that transaction's row lock first, held here;
-- - its accounts without limits exist already (the pending transaction opened
--   them), so ledger_account_ids inserts nothing and waits for no one.
-- So a group only ever makes others wait, and it ends without waiting: a cycle
-- of waiters never passes through it. It still takes its locks in the order of
-- the writers that do wait (a finish: the transaction's row, then its member
-- accounts in address order; creations, batches and member_lock: member
-- accounts in that order), so that a group and a single finish contend for the
-- same rows, in the same order, as two single finishes would.
--
-- A busy item's locks (the ones that were free) are held until the group
-- commits, which is before the service writes that item alone: the item never
-- waits for its own group.

-- Takes, without waiting, the locks ledger_finish_tx waits for: the row of
-- transaction p_tx_id, and the accounts p_member marks among p_addrs (the plan's
-- accounts, which ledger_change_balances updates) when it is still pending.
-- False when another transaction holds any of them. A transaction that does not
-- exist has nothing to lock: true, and ledger_finish_tx reports it not found.
CREATE FUNCTION ledger_finish_lock_nowait(
    p_community text, p_tx_id bigint, p_addrs text[], p_member boolean[])
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_wanted integer;
    v_locked integer;
BEGIN
    SELECT t.status INTO v_status
      FROM transactions t
     WHERE t.community_id = p_community AND t.id = p_tx_id
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NOT EXISTS (SELECT 1 FROM transactions t
                            WHERE t.community_id = p_community AND t.id = p_tx_id);
    END IF;
    IF v_status <> 'pending' THEN
        RETURN true;  -- final already: ledger_finish_tx touches no account
    END IF;
    SELECT count(*) INTO v_wanted FROM unnest(p_member) AS m(member) WHERE m.member;
    -- A FOR UPDATE subquery is never flattened: one probe of the (community_id,
    -- address) key per address, in the order of the sorted addresses.
    SELECT count(*) INTO v_locked
      FROM (SELECT u.addr FROM unnest(p_addrs, p_member) AS u(addr, member)
             WHERE u.member
             ORDER BY u.addr COLLATE "C") u
     CROSS JOIN LATERAL
           (SELECT 1 FROM accounts a
             WHERE a.community_id = p_community AND a.address = u.addr
               FOR UPDATE SKIP LOCKED) l;
    RETURN v_locked = v_wanted;
END
$$;

-- Posts or voids many pending transactions in one round trip, each on its own:
-- item i finishes transaction p_tx_ids[i] into p_statuses[i] ('posted' or
-- 'voided', with p_void_reasons[i]); its accounts are
-- p_addrs[p_acct_end[i-1]+1 : p_acct_end[i]] (and the parallel arrays), its
-- legs p_leg_*[p_leg_end[i-1]+1 : p_leg_end[i]], as in ledger_create_batch. One
-- row per item, in order: ledger_finish_tx's outcome, or 'busy'.
CREATE FUNCTION ledger_finish_batch(
    p_community text, p_tx_ids bigint[], p_statuses text[], p_void_reasons text[],
    p_acct_end integer[], p_leg_end integer[],
    p_addrs text[], p_assets text[], p_member boolean[],
    p_posted bigint[], p_held bigint[],
    p_leg_acct integer[], p_leg_amount bigint[])
RETURNS TABLE (idx integer, outcome text, finalized_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    a0 integer := 1;
    l0 integer := 1;
    a1 integer;
    l1 integer;
BEGIN
    FOR i IN 1..coalesce(array_length(p_tx_ids, 1), 0) LOOP
        a1 := p_acct_end[i];
        l1 := p_leg_end[i];
        idx := i;
        IF ledger_finish_lock_nowait(p_community, p_tx_ids[i], p_addrs[a0:a1],
                                     p_member[a0:a1]) THEN
            SELECT f.outcome, f.finalized_at INTO outcome, finalized_at
              FROM ledger_finish_tx(p_community, p_tx_ids[i], p_statuses[i], p_void_reasons[i],
                                    p_addrs[a0:a1], p_assets[a0:a1], p_member[a0:a1],
                                    p_posted[a0:a1], p_held[a0:a1],
                                    p_leg_acct[l0:l1], p_leg_amount[l0:l1]) f;
        ELSE
            outcome := 'busy';
            finalized_at := NULL;
        END IF;
        RETURN NEXT;
        a0 := a1 + 1;
        l0 := l1 + 1;
    END LOOP;
END
$$;

-- The arrays of ledger_finish_batch as the service sends them: one JSON document
-- unpacked by jsonb_populate_record, as `ledger_batch` is for creations (keys
-- the type does not name, such as the plans' `min`, are ignored).
CREATE TYPE ledger_finish_items AS (
    tx_ids bigint[], statuses text[], void_reasons text[], acct_end integer[],
    leg_end integer[], addrs text[], assets text[], member boolean[], posted bigint[],
    held bigint[], leg_acct integer[], leg_amount bigint[]
);
