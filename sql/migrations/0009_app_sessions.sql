-- The web app (SPEC section 14): one-time sign-in links, and the server-side
-- sessions a key or a link is exchanged for. A resident's link names the member
-- (`POST …/members/{m}/sign-in-links`); a staff link names an API key and opens a
-- session for that key (only `serve --demo` issues them, to print for its staff).
-- Only SHA-256 digests of link tokens and session ids are stored: a copy of these
-- tables signs no one in. A link's token reads `<community>.<secret>`, so that it
-- is found by a key that leads with the community, as every community table's is.
-- Sessions are global, as API keys are: a cookie names no community.

CREATE TABLE sign_in_links (
    community_id text        NOT NULL,
    id           text        NOT NULL,
    token_hash   bytea       NOT NULL,
    member_id    text,
    key_id       text        REFERENCES api_keys (id),
    issued_by    text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, token_hash),
    FOREIGN KEY (community_id, member_id) REFERENCES members (community_id, id),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '24 hours'),
    CHECK ((member_id IS NULL) <> (key_id IS NULL))
);

-- A staff session names the key it was opened with (revoking the key ends it); a
-- resident's names the member and the link. `csrf` is the token every form of
-- the session carries; it is not a secret on its own (it signs nobody in).
CREATE TABLE app_sessions (
    id_hash      bytea       PRIMARY KEY,
    role         text        NOT NULL,
    key_id       text,
    community_id text,
    member_id    text,
    link_id      text,
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (key_id IS NOT NULL OR (link_id IS NOT NULL AND role = 'resident'
                                  AND member_id IS NOT NULL))
);
CREATE INDEX app_sessions_expired ON app_sessions (expires_at) WHERE ended_at IS NULL;
