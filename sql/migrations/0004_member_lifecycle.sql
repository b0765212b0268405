-- Member lifecycle (issue 14): a member who moves out is closed, and a member may
-- change household; neither loses history.
--
-- A closed member keeps its row, its accounts and every entry: `closed_at`, `closed_by`
-- (the acting key), `close_reason` and `close_transaction` (the client id of the
-- transaction that took its redeemable balances away, null when there was nothing to
-- take) say when, by whom and why. Its accounts are closed in the same transaction,
-- so that the guard refusing any change to them (sql/functions/setup.sql) reads
-- nothing but the row it guards.
ALTER TABLE members
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN closed_by text,
    ADD COLUMN close_reason text,
    ADD COLUMN close_transaction text,
    ADD CONSTRAINT members_close_reason CHECK ((closed_at IS NULL) = (close_reason IS NULL));

ALTER TABLE accounts
    ADD COLUMN closed_at timestamptz,
    ADD CONSTRAINT accounts_closed_member CHECK (closed_at IS NULL OR member_id IS NOT NULL);

-- Every change of a member's household, oldest first (append-only: the guard is in
-- sql/functions/setup.sql). The household a member joined is the first change's
-- `from_household`, or its current one when it never moved.
CREATE TABLE member_households (
    community_id   text        NOT NULL,
    member_id      text        NOT NULL,
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    from_household text        NOT NULL,
    to_household   text        NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     text,
    PRIMARY KEY (community_id, member_id, seq),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    FOREIGN KEY (community_id, from_household) REFERENCES households (community_id, id),
    FOREIGN KEY (community_id, to_household) REFERENCES households (community_id, id),
    CHECK (from_household <> to_household)
);
