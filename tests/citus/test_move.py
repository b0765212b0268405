"""Moving one community on a Citus cluster (docs/scaling.md, "Moving one community"):
isolated into shards of its own (`isolate_tenant_to_new_shard … 'CASCADE'`, every
colocated table with it) and moved to the worker with the next higher group id,
while a neighbour that shared its shards stays where it was. The guards come along,
writes go on through the API, the order holds, and nothing acknowledged during the
move is lost or doubled. Skipped unless DATABASE_URL names a Citus coordinator."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import httpx
import pytest

from service.ledger.service import seal_all
from tests.citus.test_cluster import on_node, placement
from tests.helpers import transfer


@pytest.fixture(autouse=True)
def _only_on_citus(citus: bool) -> None:
    if not citus:
        pytest.skip("needs DATABASE_URL naming a Citus coordinator (docs/scaling.md)")


async def _shard(conn: asyncpg.Connection, community: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT s.shardid, s.nodename, s.nodeport, n.groupid FROM citus_shards s
             JOIN pg_dist_node n ON n.nodename = s.nodename AND n.nodeport = s.nodeport
            WHERE s.shardid = get_shard_id_for_distribution_column('transactions', $1::text)""",
        community,
    )
    assert row is not None
    return row


async def _pair(conn: asyncpg.Connection) -> tuple[str, str, asyncpg.Record]:
    """A community on a worker that has one with a higher group id, and a neighbour
    whose rows share its shards."""
    top = await conn.fetchval("SELECT max(groupid) FROM pg_dist_node")
    shards: dict[int, str] = {}
    for n in range(200):
        ident = f"lake{n}"
        shard = await _shard(conn, ident)
        if shard["groupid"] == top:
            continue
        if shard["shardid"] in shards:
            return shards[shard["shardid"]], ident, shard
        shards[shard["shardid"]] = ident
    raise AssertionError("no two ids share a shard below the top group")


async def _community(api: httpx.AsyncClient, ident: str) -> None:
    base = f"/v1/communities/{ident}"
    assert (await api.post("/v1/communities", json={"id": ident, "name": ident})).status_code == 201
    r = await api.post(f"{base}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    for m in ("m0", "m1"):
        r = await api.post(f"{base}/members", json={"id": m, "household": "h0"})
        assert r.status_code == 201, r.text
    await _post(api, ident, transfer("seed", "system:issuance:points", "member:m0:points", 500))


async def _post(api: httpx.AsyncClient, ident: str, body: dict[str, Any]) -> httpx.Response:
    r = await api.post(f"/v1/communities/{ident}/transactions", json=body)
    assert r.status_code == 201, r.text
    return r


async def _isolate_and_move(dsn: str, community: str) -> tuple[int, asyncpg.Record]:
    """The operator's two steps; the new shard and the node it went to."""
    conn = await asyncpg.connect(dsn)
    try:
        own: int = await conn.fetchval(
            """SELECT isolate_tenant_to_new_shard('transactions', $1::text, 'CASCADE',
                                                  shard_transfer_mode => 'block_writes')""",
            community,
        )
        source = await _shard(conn, community)
        target = await conn.fetchrow(
            """SELECT nodename, nodeport, groupid FROM pg_dist_node
                WHERE groupid > $1 AND noderole = 'primary' ORDER BY groupid LIMIT 1""",
            source["groupid"],
        )
        assert target is not None
        await conn.execute(
            """SELECT citus_move_shard_placement($1, $2, $3, $4, $5,
                                                 shard_transfer_mode => 'block_writes')""",
            own,
            source["nodename"],
            source["nodeport"],
            target["nodename"],
            target["nodeport"],
        )
    finally:
        await conn.close()
    return own, target


async def _cleaned_up(dsn: str) -> None:
    """The old copies dropped (`citus_cleanup_orphaned_resources`): Citus defers a
    copy still in use by an open transaction, so it is asked again until none is
    left. tests/citus_support.wipe truncates every shard of a node at once and
    would meet them."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(50):
            await conn.execute("CALL citus_cleanup_orphaned_resources()")
            if not await conn.fetchval("SELECT count(*) FROM pg_dist_cleanup"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("old shard copies left behind after the move")
    finally:
        await conn.close()


async def _statement(api: httpx.AsyncClient, ident: str, address: str) -> list[str]:
    r = await api.get(f"/v1/communities/{ident}/accounts/{address}/entries", params={"limit": 500})
    assert r.status_code == 200, r.text
    return [e["transaction_id"] for e in r.json()["entries"]]


async def test_a_community_isolated_into_its_own_shards_moves_alone(
    api: httpx.AsyncClient, dsn: str, pool: asyncpg.Pool
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        mover, neighbour, before = await _pair(conn)
    finally:
        await conn.close()
    for ident in (mover, neighbour):
        await _community(api, ident)
        await _post(api, ident, transfer("before", "member:m0:points", "member:m1:points", 7))
    own, target = await _isolate_and_move(dsn, mover)
    await _cleaned_up(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        moved, stayed = await _shard(conn, mover), await _shard(conn, neighbour)
        assert (moved["shardid"], moved["groupid"]) == (own, target["groupid"])
        assert own != before["shardid"]
        # The neighbour's shard was split around the mover's hash value (its id is
        # new) and stays on its node.
        assert stayed["groupid"] == before["groupid"] and stayed["shardid"] != own
        # Every colocated table came along: one community's rows live on one node.
        for table in ("entries", "accounts", "members", "seal_queue", "lots"):
            host, port, _ = await placement(conn, table, mover)
            assert (host, port) == (target["nodename"], target["nodeport"]), table
        host, port, shard = await placement(conn, "entries", mover)
        node = await on_node(dsn, host, port)
        try:
            assert await node.fetchval(
                f'SELECT count(*) FROM "{shard}" WHERE community_id = $1', mover
            )
            # The append-only guard is on the new shard too.
            with pytest.raises(asyncpg.PostgresError) as refused:
                await node.execute(f'UPDATE "{shard}" SET amount = amount + 1')
            assert refused.value.sqlstate == "LG403"
        finally:
            await node.close()
    finally:
        await conn.close()
    for ident in (mover, neighbour):
        await _post(api, ident, transfer("after", "member:m0:points", "member:m1:points", 3))
        statement = await _statement(api, ident, "member:m0:points")
        assert statement[:3] == ["after", "before", "seed"], statement
    assert await seal_all(pool) > 0
    for ident in (mover, neighbour):
        r = await api.get(f"/v1/communities/{ident}/audit/verify")
        assert r.status_code == 200 and r.json()["ok"] is True, r.text


@pytest.mark.skipif(
    not os.environ.get("LEDGER_CITUS_MOVE_UNDER_WRITES"),
    reason="a known limit (docs/scaling.md, Known limits): Citus 14's `block_writes` "
    "does not hold up the service's delegated function calls, and writes made during "
    "the copy leave the moved community's balances and lots inconsistent (audit: "
    "running_balance, lots); set LEDGER_CITUS_MOVE_UNDER_WRITES=1 to reproduce",
)
async def test_writes_during_the_move_are_all_there_once(
    api: httpx.AsyncClient, dsn: str, pool: asyncpg.Pool
) -> None:
    """What a move under traffic should give: the community's writes wait while its
    shards are copied and switched over; every write the API acknowledged is in the
    ledger once, at its amount; a write held up past the statement timeout answered
    503 and left nothing. It does not today (the skip's reason): move a community only
    while nothing writes to it."""
    conn = await asyncpg.connect(dsn)
    try:
        mover, _, _ = await _pair(conn)
    finally:
        await conn.close()
    await _community(api, mover)
    r = await api.get(f"/v1/communities/{mover}/members/m1/balance")
    score = r.json()["points"]["score"]
    answers: list[httpx.Response] = []
    moving = asyncio.Event()

    async def write(n: int) -> None:
        await moving.wait()
        for i in range(15):
            body = transfer(f"w{n}-{i}", "member:m0:points", "member:m1:points", 1)
            answers.append(await api.post(f"/v1/communities/{mover}/transactions", json=body))

    async def move() -> None:
        moving.set()
        await asyncio.sleep(0.05)
        await _isolate_and_move(dsn, mover)

    await asyncio.gather(move(), *(write(n) for n in range(4)))
    await _cleaned_up(dsn)
    codes = {r.status_code for r in answers}
    assert codes <= {201, 503}, [r.text for r in answers if r.status_code not in (201, 503)]
    made = sorted(r.json()["id"] for r in answers if r.status_code == 201)
    stored = await pool.fetch(
        "SELECT client_id FROM transactions WHERE community_id = $1 AND client_id LIKE 'w%'",
        mover,
    )
    assert sorted(r["client_id"] for r in stored) == made
    r = await api.get(f"/v1/communities/{mover}/members/m1/balance")
    assert r.json()["points"]["score"] == score + len(made)
    assert await seal_all(pool) >= 0
    r = await api.get(f"/v1/communities/{mover}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def _next_xid(dsn: str, host: str, port: int) -> int:
    node = await on_node(dsn, host, port)
    try:
        found: int = await node.fetchval(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        )
    finally:
        await node.close()
    return found


async def _burn_xids(dsn: str, host: str, port: int, count: int) -> None:
    """Advances a node's transaction counter by `count`: a subtransaction that
    writes takes an xid of its own."""
    node = await on_node(dsn, host, port)
    try:
        await node.execute("CREATE TEMP TABLE burn (n int)")
        await node.execute(
            f"""DO $$ BEGIN
                  FOR i IN 1..{count} LOOP
                    BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;
                  END LOOP;
                END $$"""
        )
    finally:
        await node.close()


async def test_writes_queued_before_a_move_to_a_node_behind_are_sealed_first(
    api: httpx.AsyncClient, dsn: str, pool: asyncpg.Pool
) -> None:
    """The seal queue's xid is the xid of the node that wrote the row. Moved to a
    node whose counter is behind, rows still queued carry xids that node has not
    handed out yet: the sealer takes them as committed (they were, before the move)
    and seals them ahead of what was written after the move, rather than waiting
    until that node's counter passes them."""
    conn = await asyncpg.connect(dsn)
    try:
        mover, _, source = await _pair(conn)
        target = await conn.fetchrow(
            """SELECT nodename, nodeport FROM pg_dist_node
                WHERE groupid > $1 ORDER BY groupid LIMIT 1""",
            source["groupid"],
        )
        assert target is not None
    finally:
        await conn.close()
    here = (source["nodename"], source["nodeport"])
    ahead = await _next_xid(dsn, *target) - await _next_xid(dsn, *here) + 500
    if ahead > 0:
        await _burn_xids(dsn, *here, ahead)
    await _community(api, mover)
    for i in range(3):
        await _post(api, mover, transfer(f"before{i}", "member:m0:points", "member:m1:points", 1))
    queued = await pool.fetch(
        "SELECT xid::text::bigint AS xid FROM seal_queue WHERE community_id = $1", mover
    )
    assert queued
    await _isolate_and_move(dsn, mover)
    await _cleaned_up(dsn)
    assert min(r["xid"] for r in queued) >= await _next_xid(dsn, *target)  # from its future
    await _post(api, mover, transfer("after", "member:m0:points", "member:m1:points", 1))
    await seal_all(pool)
    assert (
        await pool.fetchval("SELECT count(*) FROM seal_queue WHERE community_id = $1", mover) == 0
    )
    order = await pool.fetch(
        """SELECT t.client_id FROM seals s
             JOIN transactions t ON t.community_id = s.community_id AND t.id = s.tx_id
            WHERE s.community_id = $1 ORDER BY s.seq""",
        mover,
    )
    sealed = [r["client_id"] for r in order]
    assert sealed[-1] == "after" and sealed.index("before2") < sealed.index("after"), sealed
    r = await api.get(f"/v1/communities/{mover}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
