-- A district network, 通存通兑 (SPEC section 16; docs/network.md). A district groups
-- communities; a community belongs to at most one. What moves between two of them
-- (a redemption at another community's district-wide store, hours served for its
-- team, a time transfer, a member moving house) is one database transaction that
-- writes a balanced ledger transaction in each community, through the pair of
-- mirrored accounts `interchange:<other>:points|minutes` (system accounts, no
-- limits), and one `interchange_moves` row on each side. Each community's books
-- still sum to zero on their own; the audit checks that each pair mirrors.
--
-- On Citus, `districts` and `settlements` are reference tables (global, written
-- rarely), the others are distributed by community like every community table.

CREATE TABLE districts (
    id           text        PRIMARY KEY,
    name         text        NOT NULL,
    request_hash bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE communities ADD COLUMN district_id text REFERENCES districts (id);

-- A store of the love supermarket with a name; `district_wide`: its tills serve
-- members of every community of the district. A store that has items but no row
-- here serves its own community only, as before.
CREATE TABLE stores (
    community_id  text        NOT NULL REFERENCES communities (id),
    id            text        NOT NULL,
    name          text        NOT NULL,
    district_wide boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id)
);

-- A redemption (or hours) of a member of another community names it; the foreign
-- key to `members` then no longer applies (the member lives in that community's
-- rows), so it goes through `local_member`, which is null for such rows.
ALTER TABLE redemptions ADD COLUMN member_community text;
ALTER TABLE redemptions ADD COLUMN local_member text
    GENERATED ALWAYS AS (CASE WHEN member_community IS NULL THEN member_id END) STORED;
ALTER TABLE redemptions DROP CONSTRAINT redemptions_community_id_member_id_fkey;
ALTER TABLE redemptions ADD CONSTRAINT redemptions_local_member_fkey
    FOREIGN KEY (community_id, local_member) REFERENCES members (community_id, id);

ALTER TABLE volunteer_hours ADD COLUMN member_community text;
ALTER TABLE volunteer_hours ADD COLUMN local_member text
    GENERATED ALWAYS AS (CASE WHEN member_community IS NULL THEN member_id END) STORED;
ALTER TABLE volunteer_hours DROP CONSTRAINT volunteer_hours_community_id_member_id_fkey;
ALTER TABLE volunteer_hours ADD CONSTRAINT volunteer_hours_local_member_fkey
    FOREIGN KEY (community_id, local_member) REFERENCES members (community_id, id);

-- What a change between two communities moved, per ledger transaction and asset on
-- each side: `change_id` is the same on both sides (`redemption:<b>:<id>`, …).
-- `amount` is what left this community's side towards `counterparty` (positive: a
-- member of this community spent, gave or carried it there; negative: it came back,
-- or came in). Derived by `interchange_write` from the transactions' own entries on
-- `interchange:<counterparty>:<asset>`, in the database transaction that writes
-- both sides, and never changed, except that a settlement marks them once.
CREATE TABLE interchange_moves (
    community_id  text        NOT NULL REFERENCES communities (id),
    tx_id         bigint      NOT NULL,
    asset         text        NOT NULL CHECK (asset IN ('points', 'minutes')),
    change_id     text        NOT NULL,
    counterparty  text        NOT NULL,
    district_id   text        NOT NULL,
    amount        bigint      NOT NULL CHECK (amount <> 0),
    kind          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    settlement_id text,
    PRIMARY KEY (community_id, tx_id, asset),
    CHECK (counterparty <> community_id)
);
CREATE INDEX interchange_moves_by_change ON interchange_moves (community_id, change_id);
CREATE INDEX interchange_moves_unsettled ON interchange_moves (community_id, created_at)
    WHERE settlement_id IS NULL;
CREATE INDEX interchange_moves_by_time ON interchange_moves (community_id, created_at);

-- A settlement closes a period of a district: every change not yet settled that
-- was made before `period_to` (a change that committed late, after an earlier
-- settlement of its period, is taken by the next one: `late`). `positions` holds
-- the net positions it settled, as the clearing report shows them. Periods of a
-- district do not overlap (checked under the district's row lock).
CREATE TABLE settlements (
    district_id  text        NOT NULL REFERENCES districts (id),
    id           text        NOT NULL,
    period_from  timestamptz NOT NULL,
    period_to    timestamptz NOT NULL,
    request_hash bytea       NOT NULL,
    moves        bigint      NOT NULL,
    late         bigint      NOT NULL,
    positions    jsonb       NOT NULL,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (district_id, id),
    CHECK (period_from < period_to)
);

-- The district operator (SPEC section 16): scope, a district; reads its clearing
-- and settles it.
ALTER TABLE api_keys ADD COLUMN district_id text REFERENCES districts (id);
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN
    ('admin', 'operator', 'property', 'volunteer_app', 'organiser', 'store', 'resident',
     'district_operator'));
ALTER TABLE api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope CHECK (
    (role IN ('admin', 'district_operator')) = (community_id IS NULL)
    AND (role = 'district_operator') = (district_id IS NOT NULL));
