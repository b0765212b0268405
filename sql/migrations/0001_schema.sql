-- replaces: 0001_ledger_core.sql 0002_ledger_functions.sql 0003_rules.sql
-- replaces: 0004_offsets_supermarket.sql 0005_batch_fast_path.sql 0006_cheaper_lookups.sql
-- replaces: 0007_volunteer_hours.sql 0008_event_fast_path.sql
-- replaces: 0009_redemption_fast_path.sql 0010_offset_fast_path.sql
-- replaces: 0011_finite_rule_set_start.sql
--
-- The schema: tables, their keys and indexes, and the types the functions take.
-- (A database that applied the eleven migrations this one replaces already has
-- it: `migrate` records it as applied there without running it.) The functions
-- and triggers live in sql/functions/, one file per context.
--
-- Every primary and unique key leads with the community id so the schema can be
-- distributed by community on Citus. `communities` and `api_keys` are small,
-- global tables (Citus reference tables).

-- The ledger ---------------------------------------------------------------

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
    community_id        text        NOT NULL,
    id                  text        NOT NULL,
    household_id        text        NOT NULL,
    name                text,
    request_hash        bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    leaderboard_opt_out boolean     NOT NULL DEFAULT false,
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

-- A transaction row may change once, pending -> posted or voided (the guard in
-- sql/functions/ledger.sql); its entries never change.
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
    FOREIGN KEY (community_id) REFERENCES communities (id),
    CHECK ((status = 'pending') = (finalized_at IS NULL)),
    CHECK (status = 'posted' OR pending_postings IS NOT NULL)
);

CREATE INDEX transactions_expiring ON transactions (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX transactions_pending ON transactions (community_id, id)
    WHERE status = 'pending';
-- A transaction is reversed at most once. Partial: only reversals carry the key.
CREATE UNIQUE INDEX transactions_reversal_of ON transactions (community_id, reversal_of)
    WHERE reversal_of IS NOT NULL;

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

-- The rules engine ---------------------------------------------------------

-- A published rule set never changes; a new version supersedes it from its
-- `effective_from`.
CREATE TABLE rule_sets (
    community_id   text        NOT NULL REFERENCES communities (id),
    version        integer     NOT NULL CHECK (version >= 1),
    document       jsonb       NOT NULL,
    source         text        NOT NULL,
    media_type     text        NOT NULL,
    effective_from timestamptz NOT NULL,
    actor          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, version)
);
-- A start at the ends of time would be stored as infinity, which asyncpg reads
-- back without an offset. NOT VALID, as the migration that added it had to be
-- (rows stored before it may not pass); new rows are checked all the same.
ALTER TABLE rule_sets
    ADD CONSTRAINT rule_sets_effective_from_finite CHECK (isfinite(effective_from)) NOT VALID;

-- One row per event, written in the same transaction as what it posted; `result`
-- is what the caller was told, returned again on a replay.
CREATE TABLE events (
    community_id text        NOT NULL,
    id           text        NOT NULL,
    type         text        NOT NULL,
    member_id    text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    attributes   jsonb       NOT NULL,
    request_hash bytea       NOT NULL,
    rule_version integer,
    result       jsonb,
    actor        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id)
);

-- How much each rule gave or took from a member in a period: what caps count.
-- `period_key` names the period in the community's time zone (e.g. 2026-11,
-- 2026-W47, 2026-11-23, 2026). Only written under the member's account lock.
CREATE TABLE rule_usage (
    community_id text    NOT NULL,
    member_id    text    NOT NULL,
    rule_id      text    NOT NULL,
    period_key   text    NOT NULL,
    amount       bigint  NOT NULL DEFAULT 0 CHECK (amount >= 0),
    times        integer NOT NULL DEFAULT 0 CHECK (times >= 0),
    PRIMARY KEY (community_id, member_id, rule_id, period_key)
);

-- What a member earned and lost through rules per period (day, week, month and
-- year keys side by side): the `member.*` statistics of expressions.
CREATE TABLE member_stats (
    community_id text    NOT NULL,
    member_id    text    NOT NULL,
    period_key   text    NOT NULL,
    earned       bigint  NOT NULL DEFAULT 0 CHECK (earned >= 0),
    deducted     bigint  NOT NULL DEFAULT 0 CHECK (deducted >= 0),
    deductions   integer NOT NULL DEFAULT 0 CHECK (deductions >= 0),
    awards       integer NOT NULL DEFAULT 0 CHECK (awards >= 0),
    PRIMARY KEY (community_id, member_id, period_key)
);

-- Scheduled jobs claim (job, period) once the whole period is done, so a job that
-- runs twice, or in two processes, or catches up after downtime, skips it.
CREATE TABLE job_runs (
    community_id text        NOT NULL REFERENCES communities (id),
    job          text        NOT NULL,
    period_key   text        NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, job, period_key)
);

-- A member's statistics and rule usage at some period keys, as parallel arrays
-- (empty when nothing is counted yet): what rules_member_stats returns.
CREATE TYPE rules_stats AS (
    stat_keys text[], earned bigint[], deducted bigint[], awards integer[],
    deductions integer[],
    usage_rules text[], usage_keys text[], usage_amounts bigint[], usage_times integer[]
);

-- Property-fee offsets -----------------------------------------------------

-- An offset's points move through the ledger (transaction `offset:<id>`); its
-- status is read from that transaction (pending = held, posted = applied,
-- reversed or voided = cancelled, voided by expiry = expired).
CREATE TABLE offsets (
    community_id     text        NOT NULL,
    id               text        NOT NULL,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    request_hash     bytea       NOT NULL,
    member_id        text        NOT NULL,
    household_id     text        NOT NULL,
    property_company text        NOT NULL,
    bill_amount_fen  bigint      NOT NULL CHECK (bill_amount_fen > 0),
    points           bigint      NOT NULL CHECK (points > 0),
    fen_per_point    bigint      NOT NULL CHECK (fen_per_point > 0),
    offset_fen       bigint      NOT NULL CHECK (offset_fen = points * fen_per_point),
    -- The calendar year (community time zone) whose household cap this offset uses.
    year_key         text        NOT NULL,
    hold             boolean     NOT NULL,
    rule_version     integer     NOT NULL,
    actor            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, seq),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    FOREIGN KEY (community_id, household_id) REFERENCES households (community_id, id),
    -- Second guard: an offset never exceeds its bill.
    CHECK (offset_fen <= bill_amount_fen)
);

CREATE INDEX offsets_by_household ON offsets (community_id, household_id, year_key);
CREATE INDEX offsets_by_company ON offsets (community_id, property_company, seq);

-- The love supermarket -----------------------------------------------------

-- A store's catalogue. `stock` is what is on the shelf; redemptions take it down
-- under the row lock, returns put it back. Points move through the ledger
-- (`redemption:<id>`, `redemption:<id>:return:<n>`).
CREATE TABLE store_items (
    community_id text        NOT NULL REFERENCES communities (id),
    store_id     text        NOT NULL,
    sku          text        NOT NULL,
    name         text        NOT NULL,
    points       bigint      NOT NULL CHECK (points > 0),
    stock        bigint      NOT NULL CHECK (stock >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, store_id, sku)
);

CREATE TABLE redemptions (
    community_id text        NOT NULL,
    id           text        NOT NULL,
    request_hash bytea       NOT NULL,
    store_id     text        NOT NULL,
    member_id    text        NOT NULL,
    points       bigint      NOT NULL CHECK (points > 0),
    actor        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id)
);

-- What was bought, at the price of the moment; `returned` only grows, never past `qty`.
CREATE TABLE redemption_lines (
    community_id  text   NOT NULL,
    redemption_id text   NOT NULL,
    sku           text   NOT NULL,
    name          text   NOT NULL,
    qty           bigint NOT NULL CHECK (qty > 0),
    points_each   bigint NOT NULL CHECK (points_each > 0),
    returned      bigint NOT NULL DEFAULT 0 CHECK (returned >= 0 AND returned <= qty),
    PRIMARY KEY (community_id, redemption_id, sku),
    FOREIGN KEY (community_id, redemption_id) REFERENCES redemptions (community_id, id)
);

CREATE TABLE redemption_returns (
    community_id  text        NOT NULL,
    redemption_id text        NOT NULL,
    id            text        NOT NULL,
    request_hash  bytea       NOT NULL,
    items         jsonb       NOT NULL,
    points        bigint      NOT NULL CHECK (points > 0),
    actor         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, redemption_id, id),
    FOREIGN KEY (community_id, redemption_id) REFERENCES redemptions (community_id, id)
);

-- The time bank ------------------------------------------------------------

-- Volunteer hours: logged by a volunteer app, approved or rejected by an organiser.
-- The row is the idempotency key of the log (written first, so a concurrent
-- duplicate waits on it holding nothing) and the lock that serialises its approval
-- and rejection. Its minutes are a pending ledger credit (`vh:<id>`) from
-- system:timebank:minutes until approved (posted) or rejected (voided).
CREATE TABLE volunteer_hours (
    community_id text        NOT NULL,
    id           text        NOT NULL,
    member_id    text        NOT NULL,
    activity     text        NOT NULL,
    started_at   timestamptz NOT NULL,
    minutes      integer     NOT NULL CHECK (minutes > 0),
    organiser    text,
    status       text        NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    request_hash bytea       NOT NULL,
    actor        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    decided_at   timestamptz,
    decided_by   text,
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
