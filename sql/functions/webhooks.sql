-- Webhooks: writing events into the outbox, in the transaction of their change.
-- Re-applied by `migrate` whenever this file changes.

-- Writes the events that at least one live endpoint of the community is subscribed
-- to (by type and scope), and one delivery per such endpoint; the others are not
-- written at all (an endpoint receives what happens after it was created). One
-- statement, whatever the number of events. Returns how many deliveries it made.
CREATE OR REPLACE FUNCTION webhook_emit(p_community text, p_events webhook_event[])
RETURNS integer
LANGUAGE sql AS $$
    WITH ev AS (
        INSERT INTO outbox_events AS o
            (community_id, id, type, occurred_at, data, property_company, store)
        SELECT p_community, 'evt_' || replace(gen_random_uuid()::text, '-', ''), e.type,
               now(), e.data, e.property_company, e.store
          FROM unnest(p_events) WITH ORDINALITY AS e(type, data, property_company, store, ord)
         WHERE EXISTS (SELECT 1 FROM webhooks w
                        WHERE w.community_id = p_community AND w.deleted_at IS NULL
                          AND e.type = ANY (w.events)
                          AND (w.property_company IS NULL
                               OR w.property_company = e.property_company)
                          AND (w.store IS NULL OR w.store = e.store))
         ORDER BY e.ord
        RETURNING o.seq, o.type, o.property_company, o.store
    ), d AS (
        INSERT INTO webhook_deliveries (community_id, id, webhook_id, event_seq)
        SELECT p_community, 'dlv_' || replace(gen_random_uuid()::text, '-', ''), w.id, ev.seq
          FROM ev
          JOIN webhooks w
            ON w.community_id = p_community AND w.deleted_at IS NULL
           AND ev.type = ANY (w.events)
           AND (w.property_company IS NULL OR w.property_company = ev.property_company)
           AND (w.store IS NULL OR w.store = ev.store)
        RETURNING 1
    )
    SELECT count(*)::integer FROM d
$$;

-- Events as the service sends them, a JSON array of [type, data, property_company,
-- store] (asyncpg cannot send a composite type with a jsonb field), in order.
CREATE OR REPLACE FUNCTION webhook_events(p_events jsonb)
RETURNS webhook_event[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(
        SELECT ROW(e ->> 0, e -> 1, e ->> 2, e ->> 3)::webhook_event
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x(e, ord)
         ORDER BY x.ord)
$$;

-- The events of ledger transactions just written by ledger_write, which calls this
-- only when the community has a live endpoint, with the event types its endpoints
-- listen to (`p_listen`): each family of events is computed only when listened to.
-- `p_change` per transaction: 'held' (created pending), 'created' (created posted),
-- 'posted' or 'voided' (a pending one finished). Each event names the property
-- company of the member's household and the store it touches, which scope what
-- property and store endpoints receive. PL/pgSQL so that each statement's plan is
-- cached for the session (a SQL function of this size is planned on every call).
CREATE OR REPLACE FUNCTION webhook_ledger_events(
    p_community text, p_listen text[], p_tx bigint[], p_change text[])
RETURNS webhook_event[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_all webhook_event[] := '{}';
    v_part webhook_event[];
BEGIN
    IF p_listen && ARRAY['transaction.posted', 'points.expired'] THEN
        -- One pass over each transaction's entries gives its entries, its member, the
        -- store it touches and the member's own entry (the first of each by leg).
        WITH s AS (
            SELECT t.client_id, t.kind, t.reason, t.rule_id, t.rule_version, t.event_id,
                   t.memo, t.metadata, t.finalized_at, u.change, u.ord,
                   x.entries, x.member_id, x.store, x.member_asset, x.member_amount,
                   h.property_company
              FROM unnest(p_tx, p_change) WITH ORDINALITY AS u(id, change, ord)
              JOIN transactions t ON t.community_id = p_community AND t.id = u.id
             CROSS JOIN LATERAL (
                   SELECT jsonb_agg(jsonb_build_object(
                              'account', a.address, 'asset', a.asset, 'amount', e.amount,
                              'balance_after', e.balance_after) ORDER BY e.leg) AS entries,
                          min(a.member_id) AS member_id,
                          (array_agg(split_part(a.address, ':', 2) ORDER BY e.leg)
                              FILTER (WHERE a.address LIKE 'store:%'))[1] AS store,
                          (array_agg(a.asset ORDER BY e.leg)
                              FILTER (WHERE a.address LIKE 'member:%'))[1] AS member_asset,
                          (array_agg(e.amount ORDER BY e.leg)
                              FILTER (WHERE a.address LIKE 'member:%'))[1] AS member_amount
                     FROM entries e
                     JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
                    WHERE e.community_id = p_community AND e.tx_id = t.id) x
              JOIN members m ON m.community_id = p_community AND m.id = x.member_id
              JOIN households h ON h.community_id = p_community AND h.id = m.household_id
             WHERE u.change IN ('created', 'posted')
        ), ev AS (
            SELECT s.ord, 0 AS n, 'transaction.posted' AS type,
                   jsonb_build_object('transaction', s.client_id, 'kind', s.kind,
                       'member', s.member_id, 'reason', s.reason, 'rule_id', s.rule_id,
                       'rule_version', s.rule_version, 'event_id', s.event_id,
                       'memo', s.memo, 'posted_at', s.finalized_at,
                       'entries', s.entries) AS data,
                   s.property_company, s.store
              FROM s
            UNION ALL
            SELECT s.ord, 1, 'points.expired',
                   jsonb_build_object('member', s.member_id,
                       'asset', s.member_asset,
                       'amount', abs(s.member_amount),
                       'expires_at', s.metadata ->> 'expires_at', 'transaction', s.client_id),
                   s.property_company, NULL
              FROM s WHERE s.kind = 'expiry' AND s.change = 'created'
        )
        SELECT array_agg(ROW(ev.type, ev.data, ev.property_company, ev.store)::webhook_event
                         ORDER BY ev.ord, ev.n)
          INTO v_part
          FROM ev;
        v_all := v_all || coalesce(v_part, '{}');
    END IF;
    IF p_listen && ARRAY['offset.held', 'offset.applied', 'offset.cancelled', 'offset.expired']
    THEN
        WITH t AS (
            SELECT t.client_id, t.kind, t.void_reason, u.change, u.ord,
                   -- an applied offset cancelled: its reversal names the offset's transaction
                   CASE WHEN t.kind = 'reversal' THEN r.client_id ELSE t.client_id END
                       AS offset_tx
              FROM unnest(p_tx, p_change) WITH ORDINALITY AS u(id, change, ord)
              JOIN transactions t ON t.community_id = p_community AND t.id = u.id
              LEFT JOIN transactions r ON r.community_id = p_community AND r.id = t.reversal_of
             WHERE t.kind = 'offset' OR (t.kind = 'reversal' AND r.kind = 'offset'
                                         AND u.change = 'created')
        )
        SELECT array_agg(ROW(
                   CASE WHEN t.kind = 'reversal' THEN 'offset.cancelled'
                        WHEN t.change = 'held' THEN 'offset.held'
                        WHEN t.change IN ('created', 'posted') THEN 'offset.applied'
                        WHEN t.void_reason = 'expired' THEN 'offset.expired'
                        ELSE 'offset.cancelled' END,
                   jsonb_build_object('offset', o.id, 'member', o.member_id,
                       'household', o.household_id, 'property_company', o.property_company,
                       'bill_amount_fen', o.bill_amount_fen, 'points', o.points,
                       'offset_fen', o.offset_fen, 'transaction', t.offset_tx)
                   || CASE WHEN t.kind = 'reversal'
                           THEN jsonb_build_object('reversal', t.client_id) ELSE '{}' END,
                   o.property_company, NULL)::webhook_event ORDER BY t.ord)
          INTO v_part
          FROM t
          JOIN offsets o ON o.community_id = p_community AND t.offset_tx = 'offset:' || o.id;
        v_all := v_all || coalesce(v_part, '{}');
    END IF;
    IF p_listen && ARRAY['redemption.created', 'redemption.returned'] THEN
        SELECT array_agg(ROW(
                   CASE WHEN t.kind = 'redemption' THEN 'redemption.created'
                        ELSE 'redemption.returned' END,
                   jsonb_build_object('redemption', d.id, 'store', d.store_id,
                       'member', d.member_id,
                       'points', (SELECT abs(e.amount) FROM entries e
                                   WHERE e.community_id = p_community AND e.tx_id = t.id
                                   LIMIT 1),
                       'transaction', t.client_id)
                   || CASE WHEN t.kind = 'redemption_return'
                           THEN jsonb_build_object('return', t.metadata ->> 'return')
                           ELSE '{}' END,
                   h.property_company, d.store_id)::webhook_event ORDER BY u.ord)
          INTO v_part
          FROM unnest(p_tx, p_change) WITH ORDINALITY AS u(id, change, ord)
          JOIN transactions t ON t.community_id = p_community AND t.id = u.id
          JOIN redemptions d
            ON d.community_id = p_community AND d.id = t.metadata ->> 'redemption'
          JOIN members m ON m.community_id = p_community AND m.id = d.member_id
          JOIN households h ON h.community_id = p_community AND h.id = m.household_id
         WHERE t.kind IN ('redemption', 'redemption_return') AND u.change = 'created';
        v_all := v_all || coalesce(v_part, '{}');
    END IF;
    IF p_listen && ARRAY['volunteer_hours.logged', 'volunteer_hours.approved',
                         'volunteer_hours.rejected'] THEN
        SELECT array_agg(ROW('volunteer_hours.' || x.what,
                   jsonb_build_object('volunteer_hours', v.id, 'member', v.member_id,
                       'activity', v.activity, 'started_at', v.started_at,
                       'minutes', v.minutes, 'organiser', v.organiser,
                       'transaction', t.client_id),
                   h.property_company, NULL)::webhook_event ORDER BY u.ord, x.n)
          INTO v_part
          FROM unnest(p_tx, p_change) WITH ORDINALITY AS u(id, change, ord)
          JOIN transactions t ON t.community_id = p_community AND t.id = u.id
          JOIN volunteer_hours v ON v.community_id = p_community AND t.client_id = 'vh:' || v.id
          JOIN members m ON m.community_id = p_community AND m.id = v.member_id
          JOIN households h ON h.community_id = p_community AND h.id = m.household_id
          CROSS JOIN LATERAL unnest(CASE u.change
                   WHEN 'held' THEN ARRAY['logged']
                   WHEN 'created' THEN ARRAY['logged', 'approved']
                   WHEN 'posted' THEN ARRAY['approved']
                   ELSE ARRAY['rejected'] END) WITH ORDINALITY AS x(what, n)
         WHERE t.kind = 'volunteer_hours';
        v_all := v_all || coalesce(v_part, '{}');
    END IF;
    RETURN v_all;
END
$$;

-- The delivery claim of one community, for Citus (one server claims across every
-- community in one statement, `delivery_claim` in sql/queries/webhooks.sql).
-- Citus refuses that statement ("cannot push down this subquery": a LATERAL with
-- LIMIT over CTEs across shards), and the error also leaves the connection unable
-- to delegate any later function call (docs/scaling.md, "Why some ids came from
-- the coordinator"). Here the same claim with every table read at `p_community`:
-- distributed by that argument (sql/citus/distribute.sql), the call runs on the
-- worker that holds the community as single-shard queries, and the xids are
-- compared with that worker's snapshot, where they were written.
-- service/webhooks/store.claim calls it per community with due deliveries.
CREATE OR REPLACE FUNCTION webhook_claim(
    p_community text, p_endpoints integer, p_lease_s double precision, p_per_endpoint integer)
RETURNS TABLE (community_id text, id text, webhook_id text, attempts integer,
               event_id text, type text, seq bigint, occurred_at timestamptz, data jsonb,
               url text, secret text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH endpoints AS (
        SELECT w.community_id, w.id AS webhook_id
          FROM webhooks w
         WHERE w.community_id = p_community
           AND EXISTS (SELECT 1 FROM webhook_deliveries d
                        WHERE d.community_id = p_community AND d.webhook_id = w.id
                          AND d.status = 'pending' AND d.next_attempt_at <= now())
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                            WHERE x.community_id = p_community AND x.webhook_id = w.id
                              AND x.status = 'pending' AND x.leased_until IS NOT NULL
                              AND x.leased_until > now())
         ORDER BY w.id
         LIMIT p_endpoints
    ), due AS (
        SELECT d.id
          FROM endpoints p
         CROSS JOIN LATERAL (
               SELECT d.id
                 FROM webhook_deliveries d
                 JOIN outbox_events e ON e.community_id = p_community AND e.seq = d.event_seq
                WHERE d.community_id = p_community AND d.webhook_id = p.webhook_id
                  AND d.status = 'pending' AND d.next_attempt_at <= now()
                  -- or an event that came with its shards from another node (a
                  -- community moved; ledger_seal says why it is committed)
                  AND (e.xid < pg_snapshot_xmin(pg_current_snapshot())
                       OR e.xid >= pg_snapshot_xmax(pg_current_snapshot()))
                ORDER BY d.event_seq
                LIMIT p_per_endpoint) d
    ), claimed AS (
        SELECT d.id FROM webhook_deliveries d
         WHERE d.community_id = p_community AND d.id IN (SELECT due.id FROM due)
           AND d.status = 'pending'
           FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d
       SET leased_until = now() + make_interval(secs => p_lease_s), attempts = d.attempts + 1,
           last_attempt_at = now()
      FROM claimed c, outbox_events e, webhooks w
     WHERE d.community_id = p_community AND d.id = c.id
       AND e.community_id = p_community AND e.seq = d.event_seq
       AND w.community_id = p_community AND w.id = d.webhook_id
    RETURNING d.community_id, d.id, d.webhook_id, d.attempts, e.id, e.type,
              e.seq, e.occurred_at, e.data, w.url, w.secret;
END
$$;
