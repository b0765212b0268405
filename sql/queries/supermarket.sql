-- The love supermarket: catalogues, redemptions and returns. Redemption points move
-- through the ledger (client ids 'redemption:<id>' and 'redemption:<id>:return:<n>').

-- name: item_upsert
-- (`excluded.…`, the column's default now(), rather than now(): Citus takes only
-- immutable functions in DO UPDATE SET on a distributed table.)
INSERT INTO store_items (community_id, store_id, sku, name, points, stock)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (community_id, store_id, sku)
DO UPDATE SET name = excluded.name, points = excluded.points, stock = excluded.stock,
              updated_at = excluded.updated_at
RETURNING sku, name, points, stock, updated_at, (xmax = 0) AS created;

-- name: item_list
SELECT sku, name, points, stock, updated_at FROM store_items
 WHERE community_id = $1 AND store_id = $2 AND sku > $3
 ORDER BY sku
 LIMIT $4;

-- name: redemption_prepare
-- A redemption's first statement: the member, the basket's items locked, the id.
SELECT member_found, taken, skus, names, points, stocks
  FROM redemption_prepare($1, $2, $3, $4, $5::text[]);

-- name: redemption_write
-- Its second: the spend code ($12, its SHA-256, or null), the redemption, its
-- lines, the stock and the ledger write ($13, the ledger's write as JSON text,
-- see service/ledger/service.write_document).
SELECT written, created_at, outcome, tx_id, failure, consent, consent_max
  FROM redemption_write($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::text[], $10::bigint[],
                        $11::bigint[], $12::bytea, ledger_writes($13::text::jsonb));

-- name: redemption_get
-- Lines in byte-wise sku order, the order in which the service prices a basket and
-- answers the redemption's creation (as Python sorts): a replay reads back the same.
SELECT r.id, r.request_hash, r.store_id, r.member_id, r.member_community, r.points, r.created_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'sku', l.sku, 'name', l.name, 'qty', l.qty, 'points_each', l.points_each,
                    'returned', l.returned) ORDER BY l.sku COLLATE "C")
                   FROM redemption_lines l
                  WHERE l.community_id = $1 AND l.redemption_id = r.id),
                '[]'::jsonb) AS lines,
       coalesce((SELECT sum(x.points) FROM redemption_returns x
                  WHERE x.community_id = $1 AND x.redemption_id = r.id), 0)::bigint
         AS returned_points
  FROM redemptions r
 WHERE r.community_id = $1 AND r.id = $2;

-- name: redemption_return_get
SELECT id, request_hash, items, points, created_at FROM redemption_returns
 WHERE community_id = $1 AND redemption_id = $2 AND id = $3;

-- name: redemption_return_prepare
-- A return's first statement: the redemption locked, the return id, the lines,
-- and the row id of the transaction the return undoes.
SELECT store_id, member_id, return_hash, return_count, lines, tx_row, member_community
  FROM redemption_return_prepare($1, $2, $3);

-- name: redemption_return_write
-- Its second: items locked, lines and stock back, the ledger write ($11, as in
-- redemption_write), the return's row.
SELECT created_at, outcome, tx_id, failure
  FROM redemption_return_write($1, $2, $3, $4, $5, $6::text[], $7::bigint[], $8::jsonb, $9,
                               $10, ledger_writes($11::text::jsonb));

-- name: network_redemption_write
-- A redemption at a district-wide store of community $1 by a member of $2: see
-- sql/functions/network.sql. $15 and $16: the ledger's writes of the member's and
-- the store's side, as JSON text.
SELECT written, created_at, member_outcome, store_outcome, failure, consent, consent_max
  FROM network_redemption_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11::text[],
                                $12::bigint[], $13::bigint[], $14::bytea,
                                ledger_writes($15::text::jsonb), ledger_writes($16::text::jsonb));

-- name: network_return_write
SELECT created_at, member_outcome, store_outcome, failure
  FROM network_return_write($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::bigint[], $10::jsonb,
                            $11, $12, ledger_writes($13::text::jsonb),
                            ledger_writes($14::text::jsonb));
