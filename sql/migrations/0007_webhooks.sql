-- Webhooks (SPEC section 12): endpoints, the outbox of events, and one delivery
-- per event and endpoint.
--
-- An event is written by the statement that makes the change it reports, in the
-- same transaction (sql/functions/webhooks.sql, `webhook_emit`): no event without
-- its change, no change without its event. It is written only when at least one
-- endpoint of the community is subscribed to it at that moment, and its
-- deliveries with it; an endpoint receives what happens after it was created.
--
-- `seq` comes from one global sequence, not a counter per community: a counter
-- row would be updated by every write of the community and serialise them all
-- (the hot row docs/performance.md, "no hot account", removes from the ledger).
-- A sequence takes no lock and never goes back, so `seq` rises within every
-- community, with gaps (the other communities' events, rolled back writes).

CREATE TABLE webhooks (
    community_id     text        NOT NULL REFERENCES communities (id),
    id               text        NOT NULL,
    url              text        NOT NULL,
    events           text[]      NOT NULL CHECK (cardinality(events) > 0),
    description      text,
    -- The signing secret (`whsec_…`), kept so that deliveries can be signed; it is
    -- shown to the caller once, at creation, and never logged.
    secret           text        NOT NULL,
    -- The scope of the key that created it: a property key's company, a store key's
    -- store; both null for operators.
    property_company text,
    store            text,
    request_hash     bytea       NOT NULL,
    actor            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (community_id, id)
);

-- What `webhook_emit` probes on every write: live endpoints of a community.
CREATE INDEX webhooks_live ON webhooks (community_id) WHERE deleted_at IS NULL;

CREATE SEQUENCE outbox_seq AS bigint;

CREATE TABLE outbox_events (
    community_id     text        NOT NULL,
    seq              bigint      NOT NULL DEFAULT nextval('outbox_seq'),
    id               text        NOT NULL,
    type             text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    data             jsonb       NOT NULL,
    property_company text,
    store            text,
    -- The writer's transaction: delivery waits until every transaction older than
    -- it has ended, as the sealer does, so a lower seq is rarely delivered late.
    xid              xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, seq),
    UNIQUE (community_id, id)
);
ALTER SEQUENCE outbox_seq OWNED BY outbox_events.seq;

-- One per event and endpoint. `pending` until a 2xx (`delivered`) or the last
-- retry (`failed`); a worker that takes one leases it (`leased_until`), so that a
-- worker that died mid-attempt leaves it to be taken again after the lease.
CREATE TABLE webhook_deliveries (
    community_id    text        NOT NULL,
    id              text        NOT NULL,
    webhook_id      text        NOT NULL,
    event_seq       bigint      NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, webhook_id, event_seq),
    FOREIGN KEY (community_id, webhook_id) REFERENCES webhooks (community_id, id),
    FOREIGN KEY (community_id, event_seq) REFERENCES outbox_events (community_id, seq)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (community_id, webhook_id, event_seq);

-- What `webhook_emit` writes: one event, before it has a seq and an id.
CREATE TYPE webhook_event AS (
    type             text,
    data             jsonb,
    property_company text,
    store            text
);
