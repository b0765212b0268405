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
