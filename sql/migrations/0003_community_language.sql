-- The language a community's system reasons are written in (SPEC section 9): the
-- opening balance, offsets, the love supermarket, conversions, reversals, expiry.
-- Reasons of the rule set's rules are written by their authors and kept as written.
-- Set when the community is created; communities that existed before read zh-CN,
-- the SPEC's default, from their next system-written transaction on (what was
-- written before stays as it was: it is sealed in the chain).
ALTER TABLE communities
    ADD COLUMN language text NOT NULL DEFAULT 'zh-CN'
        CONSTRAINT communities_language CHECK (language IN ('zh-CN', 'en'));
