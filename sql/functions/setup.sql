-- Setup's guards: what the database refuses about members who moved out and the
-- history of households. Re-applied by `migrate` whenever this file changes.
--
-- The use cases (service/setup/lifecycle.py) check all of it first; these are the
-- second guards, for a write that raced a close or that no service check saw.
-- SQLSTATE LG409 is the domain error `member_closed` (service/errors.py, GUARDS).

-- A closed account takes no credit, debit or hold, and stays closed. The trigger's
-- WHEN reads only the row being updated, so the ledger's writes to open accounts
-- pay for one comparison and no function call.
CREATE OR REPLACE FUNCTION setup_refuse_closed_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'member % moved out: its account % is closed and takes no more credits, debits or holds',
        OLD.member_id, OLD.address
        USING ERRCODE = 'LG409';
END
$$;

CREATE OR REPLACE TRIGGER accounts_closed BEFORE UPDATE OF posted, held, closed_at ON accounts
    FOR EACH ROW
    WHEN (OLD.closed_at IS NOT NULL
          AND (NEW.posted, NEW.held, NEW.closed_at) IS DISTINCT FROM
              (OLD.posted, OLD.held, OLD.closed_at))
    EXECUTE FUNCTION setup_refuse_closed_account();

-- A closed member stays closed, with the reason it was closed for, in the household
-- it left (other columns, such as the leaderboard opt-out, stay the member's to change).
CREATE OR REPLACE FUNCTION setup_refuse_closed_member() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'member % moved out: it is closed and stays in the household it left', OLD.id
        USING ERRCODE = 'LG409';
END
$$;

CREATE OR REPLACE TRIGGER members_closed BEFORE UPDATE ON members
    FOR EACH ROW
    WHEN (OLD.closed_at IS NOT NULL
          AND (NEW.household_id, NEW.closed_at, NEW.closed_by, NEW.close_reason,
               NEW.close_transaction) IS DISTINCT FROM
              (OLD.household_id, OLD.closed_at, OLD.closed_by, OLD.close_reason,
               OLD.close_transaction))
    EXECUTE FUNCTION setup_refuse_closed_member();

-- The history of households is append-only, as the ledger's entries are.
CREATE OR REPLACE TRIGGER member_households_append_only
    BEFORE UPDATE OR DELETE ON member_households
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE OR REPLACE TRIGGER member_households_no_truncate BEFORE TRUNCATE ON member_households
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
