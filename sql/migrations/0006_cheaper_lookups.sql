-- Two costs pg_stat_statements found on the write path (bench --pgss, scenario 4):
--
-- 1. ledger_account_ids joined the given addresses to `accounts`; PL/pgSQL's generic
--    plan for that join cannot see how few addresses there are and scanned
--    `accounts` (0.57 ms a call with 20,000 accounts, growing with the community).
--    Each address is now one probe of the (community_id, address) key.
-- 2. The guard on `transactions` compared the old and new rows as jsonb, building
--    both documents on every post and void (0.2 ms an UPDATE). It now compares the
--    rows themselves with the mutable columns carried over, which still covers
--    every column, including any added later.

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

-- Only reversals carry `reversal_of`, yet the unique key indexed a NULL for every
-- other transaction (6.5 bytes a posting at scale). The same key, partial.
CREATE UNIQUE INDEX transactions_reversal_of ON transactions (community_id, reversal_of)
    WHERE reversal_of IS NOT NULL;
ALTER TABLE transactions DROP CONSTRAINT transactions_community_id_reversal_of_key;
