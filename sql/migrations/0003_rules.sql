-- The rules engine: versioned rule sets, events, and the per-member counters that
-- caps, statistics and scheduled jobs read.

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

CREATE TRIGGER rule_sets_immutable BEFORE UPDATE OR DELETE ON rule_sets
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

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
