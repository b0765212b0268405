-- Property-fee offsets, the love supermarket, and the leaderboard opt-out.
--
-- Both spending flows write their points through the ledger (transactions with
-- derived client ids `offset:<id>`, `redemption:<id>`, `redemption:<id>:return:<n>`;
-- client-chosen ids cannot contain ':' so these never collide). The rows here say
-- what the money or goods were; the ledger's transactions say what happened to the
-- points. An offset's status is read from its transaction (pending = held, posted =
-- applied, reversed or voided = cancelled, voided by expiry = expired), so the
-- expiry job that voids holds needs to know nothing about offsets.

ALTER TABLE members ADD COLUMN leaderboard_opt_out boolean NOT NULL DEFAULT false;

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

-- A store's catalogue. `stock` is what is on the shelf; redemptions take it down
-- under the row lock, returns put it back.
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
