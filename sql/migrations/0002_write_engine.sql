-- The ledger's one write engine (`ledger_write`, sql/functions/ledger.sql) takes
-- its writes as an array of `ledger_write`; each names the accounts it changes
-- (`ledger_account_change`, in lock order) and the legs of its entries
-- (`ledger_leg`), and gets back one `ledger_written`.
--
-- The functions of the two engines it replaces go, with the type of their
-- parallel arrays. (IF EXISTS: a database built from 0001 never had them.)

DROP FUNCTION IF EXISTS ledger_create_document(text, jsonb);
DROP FUNCTION IF EXISTS ledger_create_batch(
    text, text[], bytea[], text[], boolean[], text[], text[], text[], text[], text[],
    integer[], text[], text[], bigint[], bigint[], integer[], integer[], text[], text[],
    boolean[], bigint[], bigint[], bigint[], integer[], bigint[], boolean);
DROP FUNCTION IF EXISTS ledger_create_one(
    text, text, bytea, text, boolean, jsonb, text, jsonb, text, text, integer, text, text,
    bigint, bigint, text[], bigint[], boolean[], bigint[], bigint[], bigint[], integer[],
    bigint[], boolean);
DROP FUNCTION IF EXISTS ledger_batch_write(
    text, integer, text[], bytea[], text[], boolean[], text[], text[], text[], text[],
    text[], integer[], text[], text[], bigint[], bigint[], integer[], integer[], integer[],
    integer[], bigint[], boolean[], bigint[], bigint[], integer[], bigint[], bigint[],
    bigint[]);
DROP FUNCTION IF EXISTS ledger_batch_apply(
    text, integer, integer[], bigint[], boolean[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS ledger_batch_first_unsure(
    text, text[], integer[], bigint[], boolean[], bigint[], bigint[], bigint[], bigint[],
    bigint[], bigint[]);
DROP FUNCTION IF EXISTS ledger_batch_item_of(integer[]);
DROP FUNCTION IF EXISTS ledger_finish_tx(
    text, bigint, text, text, text[], text[], boolean[], bigint[], bigint[], integer[],
    bigint[]);
DROP FUNCTION IF EXISTS ledger_append_entries(
    text, bigint, bigint[], boolean[], bigint[], bigint[], integer[], bigint[]);
DROP FUNCTION IF EXISTS ledger_change_balances(
    text, bigint[], boolean[], bigint[], bigint[], bigint[], boolean);
DROP FUNCTION IF EXISTS ledger_undo_balances(text, bigint[], boolean[], bigint[], bigint[]);
DROP TYPE IF EXISTS ledger_batch;
-- Their callers' signatures change with them: the functions files create them anew.
DROP FUNCTION IF EXISTS redemption_write(
    text, text, bytea, text, text, bigint, text, text[], text[], bigint[], bigint[], jsonb);
DROP FUNCTION IF EXISTS redemption_return_write(
    text, text, text, bytea, text, text[], bigint[], jsonb, bigint, text, jsonb);
DROP FUNCTION IF EXISTS offset_create(
    text, text, bytea, text, text, text, bigint, bigint, bigint, bigint, text, boolean,
    integer, text, bigint, jsonb);

-- One account a write changes: the change to its posted balance and to its
-- pending debits, and the lowest `posted - held` a change that lowers it may
-- leave (null: no limit). Member accounts (`member`) are locked and checked;
-- the others are never locked or updated by a write.
CREATE TYPE ledger_account_change AS (
    address text,
    asset   text,
    member  boolean,
    posted  bigint,
    held    bigint,
    minimum bigint
);

-- One entry of a write: `amount` on the write's `account`-th account (from 1).
CREATE TYPE ledger_leg AS (
    account integer,
    amount  bigint
);

-- One write: `op` is 'create' (a new transaction, posted or pending, by client
-- id), 'post' or 'void' (the pending transaction `tx_id`). The transaction's
-- fields are those of `transactions`; `ttl_s` makes its `expires_at`.
CREATE TYPE ledger_write AS (
    op           text,
    tx_id        bigint,
    client_id    text,
    request_hash bytea,
    kind         text,
    pending      boolean,
    reserved     jsonb,
    memo         text,
    metadata     jsonb,
    reason       text,
    rule_id      text,
    rule_version integer,
    event_id     text,
    actor        text,
    reversal_of  bigint,
    ttl_s        bigint,
    void_reason  text,
    accounts     ledger_account_change[],
    legs         ledger_leg[]
);

-- What became of write `idx` (see ledger_write for the outcomes).
CREATE TYPE ledger_written AS (
    idx          integer,
    outcome      text,
    tx_id        bigint,
    created_at   timestamptz,
    expires_at   timestamptz,
    finalized_at timestamptz,
    failure      jsonb
);
