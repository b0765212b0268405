-- The delivery worker's claim (sql/queries/webhooks.sql, `delivery_claim`) reads,
-- per live endpoint, only the first few pending deliveries in seq order and its
-- attempts under way, so that a claim costs the same with 10 or 100,000 pending:
-- both are partial indexes over what is still pending.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries
    (community_id, webhook_id, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries
    (community_id, webhook_id) WHERE status = 'pending' AND leased_until IS NOT NULL;
