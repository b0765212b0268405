-- Consent and people (SPEC sections 10 and 11): spend codes, PINs and mandates by
-- which residents approve what is spent from their points; organisers with teams,
-- approvals of volunteer hours by distinct keys; proxies (亲情代理).

-- Keys: the organiser role, optionally limited to teams.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN
    ('admin', 'operator', 'property', 'volunteer_app', 'organiser', 'store', 'resident'));
ALTER TABLE api_keys ADD COLUMN teams text[];
ALTER TABLE api_keys ADD CONSTRAINT api_keys_teams CHECK (teams IS NULL OR role = 'organiser');

-- A spend code: shown by the resident's phone as a QR code, presented once by a
-- till. Only its SHA-256 is stored (the code carries 128 random bits, so a slow
-- hash adds nothing, as for keys). `used_by` is the redemption it authorised;
-- it stays used when that redemption's points are returned.
CREATE TABLE spend_codes (
    community_id text        NOT NULL,
    code_hash    bytea       NOT NULL,
    member_id    text        NOT NULL,
    max_points   bigint      NOT NULL CHECK (max_points > 0),
    store        text,
    expires_at   timestamptz NOT NULL,
    issued_by    text        NOT NULL,
    on_behalf_of text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_by      text,
    used_at      timestamptz,
    PRIMARY KEY (community_id, code_hash),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    CHECK ((used_by IS NULL) = (used_at IS NULL))
);
CREATE INDEX spend_codes_by_member ON spend_codes (community_id, member_id, created_at);

-- A resident's PIN (scrypt, salt and parameters in `pin_hash`) and the wrong tries
-- against it. No foreign key: a wrong PIN for a member id that does not exist is
-- counted and locked the same way, so the answers never tell the two apart.
CREATE TABLE member_pins (
    community_id text        NOT NULL REFERENCES communities (id),
    member_id    text        NOT NULL,
    pin_hash     text,
    failures     integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until timestamptz,
    set_by       text,
    set_at       timestamptz,
    PRIMARY KEY (community_id, member_id)
);

-- A mandate: member's standing consent to one property company's offsets, within
-- ceilings. One row per (member, company) holds the terms in force (`id` changes
-- with every PUT; `revoked_at` set by DELETE); `mandate_log` keeps every version.
CREATE TABLE mandates (
    community_id        text        NOT NULL,
    member_id           text        NOT NULL,
    property_company    text        NOT NULL,
    id                  text        NOT NULL,
    max_points_per_bill bigint      NOT NULL CHECK (max_points_per_bill > 0),
    max_points_per_year bigint      CHECK (max_points_per_year > 0),
    granted_by          text        NOT NULL,
    on_behalf_of        text,
    granted_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz,
    revoked_by          text,
    PRIMARY KEY (community_id, member_id, property_company),
    UNIQUE (community_id, id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

CREATE TABLE mandate_log (
    community_id        text        NOT NULL,
    seq                 bigint      GENERATED ALWAYS AS IDENTITY,
    mandate_id          text        NOT NULL,
    member_id           text        NOT NULL,
    property_company    text        NOT NULL,
    action              text        NOT NULL CHECK (action IN ('granted', 'revoked')),
    max_points_per_bill bigint,
    max_points_per_year bigint,
    actor               text        NOT NULL,
    on_behalf_of        text,
    at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, seq)
);

ALTER TABLE offsets ADD COLUMN mandate_id text;
CREATE INDEX offsets_by_member_company ON offsets
    (community_id, member_id, property_company, year_key);

-- Proxies (亲情代理): member `proxy_id`'s resident key may act for `member_id`
-- within `scopes`.
CREATE TABLE proxies (
    community_id text        NOT NULL,
    member_id    text        NOT NULL,
    proxy_id     text        NOT NULL,
    scopes       text[]      NOT NULL CHECK (
        cardinality(scopes) >= 1 AND scopes <@ ARRAY['read', 'spend', 'time']::text[]),
    granted_by   text        NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    revoked_by   text,
    PRIMARY KEY (community_id, member_id, proxy_id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    FOREIGN KEY (community_id, proxy_id) REFERENCES members (community_id, id),
    CHECK (member_id <> proxy_id),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX proxies_by_proxy ON proxies (community_id, proxy_id) WHERE revoked_at IS NULL;

-- Volunteer hours: the team that served, the approvals they need and have.
ALTER TABLE volunteer_hours ADD COLUMN team text;
ALTER TABLE volunteer_hours ADD COLUMN approvals_needed integer NOT NULL DEFAULT 1
    CHECK (approvals_needed >= 1);
CREATE INDEX volunteer_hours_queue ON volunteer_hours (community_id, status, created_at, id);

CREATE TABLE hours_approvals (
    community_id text        NOT NULL,
    hours_id     text        NOT NULL,
    key_id       text        NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, hours_id, key_id),
    FOREIGN KEY (community_id, hours_id) REFERENCES volunteer_hours (community_id, id)
);

-- The signatures of the writes that check consent change: the functions files
-- create them anew.
DROP FUNCTION IF EXISTS redemption_write(
    text, text, bytea, text, text, bigint, text, text[], text[], bigint[], bigint[],
    ledger_write[]);
DROP FUNCTION IF EXISTS offset_create(
    text, text, bytea, text, text, text, bigint, bigint, bigint, bigint, text, boolean,
    integer, text, bigint, ledger_write[]);

-- Acts of a proxy (SPEC section 11): a transaction written by member p's resident
-- key for member m records the key as `actor` and m as `on_behalf_of`; the write
-- engine takes it with the other fields of a write (null for everything else).
ALTER TABLE transactions ADD COLUMN on_behalf_of text;
ALTER TYPE ledger_write ADD ATTRIBUTE on_behalf_of text;
