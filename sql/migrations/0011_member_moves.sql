-- Moving house within a district (SPEC section 16).
-- A member's move to another community of the district (service/network/moves.py),
-- once per client id in the community it leaves: the request it was made by (a
-- replay answers from this row, another request under the id is a conflict), the
-- membership it closed and the one it opened, and what it carried. A move with
-- nothing to carry writes no transaction, so this row is what its id names. No
-- foreign key to the new member: it lives in the other community's rows (on Citus,
-- another shard).
CREATE TABLE member_moves (
    community_id text        NOT NULL REFERENCES communities (id),
    id           text        NOT NULL,
    request_hash bytea       NOT NULL,
    member_id    text        NOT NULL,
    to_community text        NOT NULL REFERENCES communities (id),
    to_member    text        NOT NULL,
    district_id  text        NOT NULL,
    carried      jsonb       NOT NULL,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, member_id),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    CHECK (to_community <> community_id)
);
