-- Ledger core: communities, households, members, accounts, transactions and their
-- append-only entries, the hash chain that seals them, and API keys.
--
-- Every primary and unique key leads with the community id so the schema can be
-- distributed by community on Citus. `communities` and `api_keys` are small,
-- global tables (Citus reference tables).

CREATE TABLE communities (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    timezone     text        NOT NULL,
    request_hash bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE households (
    community_id     text        NOT NULL REFERENCES communities (id),
    id               text        NOT NULL,
    address          text,
    property_company text        NOT NULL,
    request_hash     bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id)
);

CREATE TABLE members (
    community_id text        NOT NULL,
    id           text        NOT NULL,
    household_id text        NOT NULL,
    name         text,
    request_hash bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, household_id) REFERENCES households (community_id, id)
);

-- Member accounts carry limits: their row holds the live posted balance and the
-- pending debits, and writers lock it. Every other account (system, property,
-- store) has no limit and is never locked or updated by a write: its `posted`
-- is the sum of its sealed entries, rolled up by the sealer, and its live
-- balance adds the entries still waiting in `seal_queue`.
CREATE TABLE accounts (
    community_id text        NOT NULL REFERENCES communities (id),
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    address      text        NOT NULL,
    asset        text        NOT NULL CHECK (asset IN ('points', 'minutes')),
    member_id    text,
    posted       bigint      NOT NULL DEFAULT 0,
    held         bigint      NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, address),
    -- Second guard behind the service: minutes never go below zero.
    CHECK (member_id IS NULL OR asset <> 'minutes' OR posted - held >= 0),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id)
);

CREATE TABLE transactions (
    community_id     text        NOT NULL,
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    client_id        text        NOT NULL,
    request_hash     bytea       NOT NULL,
    kind             text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    -- What a pending transaction reserved, as [{source, destination, asset, amount}].
    pending_postings jsonb,
    memo             text,
    metadata         jsonb,
    reason           text,
    rule_id          text,
    rule_version     integer,
    event_id         text,
    actor            text,
    reversal_of      bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    finalized_at     timestamptz,
    void_reason      text,
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, client_id),
    UNIQUE (community_id, reversal_of),
    FOREIGN KEY (community_id) REFERENCES communities (id),
    CHECK ((status = 'pending') = (finalized_at IS NULL)),
    CHECK (status = 'posted' OR pending_postings IS NOT NULL)
);

CREATE INDEX transactions_expiring ON transactions (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX transactions_pending ON transactions (community_id, id)
    WHERE status = 'pending';

-- One row per side of a posting: the source side is negative, the destination
-- side positive. `balance_after` is exact for member accounts (their row is
-- locked while the entry is written) and null for accounts without limits.
CREATE SEQUENCE entry_seq AS bigint;

CREATE TABLE entries (
    tx_id         bigint      NOT NULL,
    account_id    bigint      NOT NULL,
    seq           bigint      NOT NULL DEFAULT nextval('entry_seq'),
    amount        bigint      NOT NULL CHECK (amount <> 0),
    balance_after bigint,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    leg           smallint    NOT NULL CHECK (leg >= 0),
    community_id  text        NOT NULL,
    PRIMARY KEY (community_id, tx_id, leg)
);

CREATE INDEX entries_by_account ON entries (community_id, account_id, seq);

-- Transactions whose entries are final but not yet in the hash chain. The
-- sealer takes only rows whose writer's xid is below every running
-- transaction's, so nothing can later appear before what it has sealed.
CREATE TABLE seal_queue (
    community_id text   NOT NULL,
    tx_id        bigint NOT NULL,
    xid          xid8   NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (community_id, tx_id)
);

CREATE TABLE seals (
    community_id text        NOT NULL,
    seq          bigint      NOT NULL,
    tx_id        bigint      NOT NULL,
    digest       bytea       NOT NULL,
    hash         bytea       NOT NULL,
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, seq),
    UNIQUE (community_id, tx_id)
);

CREATE TABLE chain_heads (
    community_id text   PRIMARY KEY REFERENCES communities (id),
    seq          bigint NOT NULL DEFAULT 0,
    hash         bytea  NOT NULL DEFAULT '\x'::bytea
);

CREATE TABLE api_keys (
    id               text        PRIMARY KEY,
    secret_hash      bytea       NOT NULL,
    role             text        NOT NULL CHECK (role IN
        ('admin', 'operator', 'property', 'volunteer_app', 'store', 'resident')),
    community_id     text        REFERENCES communities (id),
    property_company text,
    store            text,
    member_id        text,
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz,
    CHECK ((role = 'admin') = (community_id IS NULL))
);

-- The database refuses to change what the ledger has written.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'LG403';
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- A transaction row may change once: pending -> posted or voided. Nothing else.
CREATE FUNCTION ledger_guard_transaction() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transactions cannot be deleted' USING ERRCODE = 'LG403';
    END IF;
    IF OLD.status <> 'pending' OR NEW.status NOT IN ('posted', 'voided')
       OR to_jsonb(NEW) - 'status' - 'finalized_at' - 'void_reason'
          IS DISTINCT FROM to_jsonb(OLD) - 'status' - 'finalized_at' - 'void_reason' THEN
        RAISE EXCEPTION 'transaction % is immutable once final', OLD.id USING ERRCODE = 'LG403';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER transactions_guard BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_transaction();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
