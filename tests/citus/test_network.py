"""The district network on a Citus cluster (SPEC sections 15 and 16): a change
between two communities whose shards are on different workers is one distributed
transaction, committed on both or on neither. Skipped unless DATABASE_URL names a
Citus coordinator."""

from __future__ import annotations

import asyncpg
import pytest

from tests.citus.test_cluster import on_node, placement, two_communities_apart
from tests.helpers import Client, award, community


@pytest.fixture(autouse=True)
def _only_on_citus(citus: bool) -> None:
    if not citus:
        pytest.skip("needs DATABASE_URL naming a Citus coordinator (docs/scaling.md)")


async def _rows_on_its_worker(dsn: str, conn: asyncpg.Connection, table: str, c: str) -> int:
    """How many rows of community `c` the shard of `table` holds, read on its worker."""
    host, port, shard = await placement(conn, table, c)
    node = await on_node(dsn, host, port)
    try:
        count: int = await node.fetchval(
            f'SELECT count(*) FROM "{shard}" WHERE community_id = $1', c
        )
    finally:
        await node.close()
    return count


async def test_a_redemption_across_workers_commits_on_both_or_neither(
    client: Client, dsn: str
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        green, other = await two_communities_apart(conn)
        await community(client, members=1)
        await award(client, "a1", "m0", 50)
        base = f"/v1/communities/{other}"
        assert (
            await client.post("/v1/communities", json={"id": other, "name": "B"})
        ).status_code == 201
        r = await client.post(
            "/v1/districts", json={"id": "d1", "name": "D", "communities": [green, other]}
        )
        assert r.status_code == 201, r.text
        await client.put(f"{base}/stores/s1", json={"name": "Love", "district_wide": True})
        await client.put(
            f"{base}/stores/s1/items/oil", json={"name": "Oil", "points": 20, "stock": 9}
        )
        assert (await placement(conn, "transactions", green))[:2] != (
            await placement(conn, "transactions", other)
        )[:2]
        body = {"id": "r1", "store": "s1", "member": "m0", "member_community": green}
        # Too much: whichever side the lock order writes first, nothing is left anywhere.
        r = await client.post(
            f"{base}/redemptions", json=body | {"items": [{"sku": "oil", "qty": 3}]}
        )
        assert r.status_code == 409 and r.json()["code"] == "insufficient_points"
        assert await _rows_on_its_worker(dsn, conn, "interchange_moves", green) == 0
        assert await _rows_on_its_worker(dsn, conn, "interchange_moves", other) == 0
        assert await _rows_on_its_worker(dsn, conn, "redemptions", other) == 0
        r = await client.post(
            f"{base}/redemptions", json=body | {"items": [{"sku": "oil", "qty": 2}]}
        )
        assert r.status_code == 201, r.text
        # Each side lives on its own worker.
        assert await _rows_on_its_worker(dsn, conn, "interchange_moves", green) == 1
        assert await _rows_on_its_worker(dsn, conn, "interchange_moves", other) == 1
        r = await client.post(f"{base}/redemptions/r1/return")
        assert r.status_code == 201, r.text
        assert await _rows_on_its_worker(dsn, conn, "interchange_moves", green) == 2
        audit = (await client.get("/v1/districts/d1/audit/verify")).json()
        assert audit["ok"], audit
        clearing = (await client.get("/v1/districts/d1/clearing")).json()
        assert {p["net_points"] for p in clearing["positions"]} == {0}
    finally:
        await conn.close()
