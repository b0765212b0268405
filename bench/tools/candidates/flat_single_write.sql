-- Tried and dropped (docs/performance.md, "Tried and dropped"): a single ledger
-- write in fewer statements. Run on a copy of a kept bench database with
--   uv run python -m bench.tools.single_write /tmp/bw-try --apply bench/tools/candidates/flat_single_write.sql
--
-- 1. ledger_account_ids resolves the addresses and notices an unopened one in one
--    statement instead of two.
-- 2. ledger_create_one inserts the transaction, its entries and its seal_queue row
--    in one statement (data-modifying CTEs) instead of three and a call of
--    ledger_append_entries.

CREATE OR REPLACE FUNCTION ledger_account_ids(p_community text, p_addrs text[], p_assets text[])
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_unopened boolean;
BEGIN
    SELECT array_agg(x.id ORDER BY x.ord),
           coalesce(bool_or(x.id IS NULL AND x.addr NOT LIKE 'member:%'), false)
      INTO v_ids, v_unopened
      FROM (SELECT a.ord, a.addr,
                   (SELECT acc.id FROM accounts acc
                     WHERE acc.community_id = p_community AND acc.address = a.addr) AS id
              FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord)
            OFFSET 0) x;
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
                       WHERE acc.community_id = p_community AND acc.address = a.addr)
                     ORDER BY a.ord)
      INTO v_ids
      FROM unnest(p_addrs) WITH ORDINALITY AS a(addr, ord);
    RETURN v_ids;
END
$$;

CREATE OR REPLACE FUNCTION ledger_create_one(
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
    v_missing integer := array_position(p_ids, NULL);
    v_after bigint[];
BEGIN
    IF v_missing IS NOT NULL THEN
        outcome := 'not_found';
        failure := jsonb_build_object('address', p_addrs[v_missing]);
        RETURN;
    END IF;
    SELECT c.posted_after, c.failure INTO v_after, failure
      FROM ledger_change_balances(p_community, p_ids, p_member, p_posted, p_held, p_min,
                                  p_skip_locked) c;
    IF failure ? 'busy' THEN
        outcome := 'busy';
        RETURN;
    END IF;
    IF failure IS NULL THEN
        WITH tx AS (
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
            RETURNING t.id, t.created_at, t.expires_at
        ), legs AS (
            INSERT INTO entries (community_id, tx_id, leg, account_id, amount, balance_after)
            SELECT p_community, tx.id, (l.ord - 1)::smallint, p_ids[l.acct], l.amount,
                   CASE WHEN p_member[l.acct] THEN
                       v_after[l.acct] - p_posted[l.acct]
                       + sum(l.amount) OVER (PARTITION BY l.acct ORDER BY l.ord)
                   END
              FROM tx, unnest(p_leg_acct, p_leg_amount) WITH ORDINALITY AS l(acct, amount, ord)
             WHERE NOT p_pending
             ORDER BY l.ord
        ), queued AS (
            INSERT INTO seal_queue (community_id, tx_id)
            SELECT p_community, tx.id FROM tx WHERE NOT p_pending
        )
        SELECT tx.id, tx.created_at, tx.expires_at INTO tx_id, created_at, expires_at FROM tx;
        IF FOUND THEN
            outcome := 'created';
            RETURN;
        END IF;
        PERFORM ledger_undo_balances(p_community, p_ids, p_member, p_posted, p_held);
    END IF;
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
