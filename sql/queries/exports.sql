-- Exports (SPEC section 13). The settlement sheet of offsets reads through the
-- offsets' own queries (offset_list, offset_totals), so that its rows and totals
-- are those of `GET …/offsets`; what is here serves the other sheets.

-- name: export_now
-- The snapshot's clock: now() is the transaction's start, the instant offset_totals
-- counts holds as unexpired at, so the sheet's statuses are read at the same one.
SELECT now() AS now;

-- name: export_redemptions
-- The redemptions and returns of store $2 (null: every store) made in [$3, $4),
-- oldest first: one row per redemption and one per return, each with its goods as
-- [name, qty] pairs in byte-wise sku order (the order of the redemption's reason).
-- Read through a cursor inside the export's read-only transaction. `member_community`:
-- the member's community when it is another one of the district (SPEC section 16).
-- (A return's goods are its items joined and grouped here, not a subquery over
-- `jsonb_to_recordset(x.items)` per row: Citus 14 resolves the outer `x.items` of
-- such a subquery against the wrong table, "invalid attnum 5 for relation i".
-- Same rows: the lines' key is (community, redemption, sku), so the join adds no
-- row, and a return without items, if there were one, keeps its NULL goods.)
SELECT e.kind, e.redemption, e.return_id, e.store, e.member, e.member_community, e.points,
       e.created_at, e.goods
  FROM (
        SELECT 'redemption' AS kind, r.id AS redemption, NULL::text AS return_id,
               r.store_id AS store, r.member_id AS member, r.member_community, r.points,
               r.created_at,
               (SELECT jsonb_agg(jsonb_build_array(l.name, l.qty) ORDER BY l.sku COLLATE "C")
                  FROM redemption_lines l
                 WHERE l.community_id = $1 AND l.redemption_id = r.id) AS goods
          FROM redemptions r
         WHERE r.community_id = $1 AND ($2::text IS NULL OR r.store_id = $2)
           AND r.created_at >= $3 AND r.created_at < $4
        UNION ALL
        SELECT 'return', r.id, x.id, r.store_id, r.member_id, r.member_community, x.points,
               x.created_at,
               jsonb_agg(jsonb_build_array(coalesce(l.name, i.sku), i.qty)
                         ORDER BY i.sku COLLATE "C") FILTER (WHERE i.n IS NOT NULL)
          FROM redemption_returns x
          JOIN redemptions r ON r.community_id = x.community_id AND r.id = x.redemption_id
          LEFT JOIN LATERAL ROWS FROM (jsonb_to_recordset(x.items) AS (sku text, qty bigint))
                    WITH ORDINALITY AS i(sku, qty, n) ON true
          LEFT JOIN redemption_lines l
            ON l.community_id = x.community_id AND l.redemption_id = x.redemption_id
           AND l.sku = i.sku
         WHERE x.community_id = $1 AND ($2::text IS NULL OR r.store_id = $2)
           AND x.created_at >= $3 AND x.created_at < $4
         GROUP BY x.community_id, x.redemption_id, x.id, r.community_id, r.id
       ) e
 ORDER BY e.created_at, e.redemption, e.return_id NULLS FIRST;
