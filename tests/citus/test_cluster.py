"""The service on a Citus cluster (SPEC section 15, docs/scaling.md): what `migrate`
distributed, where a community lives, and that the guards of section 6 still hold
on the worker that holds a community's shards. Skipped unless DATABASE_URL names a
Citus coordinator (tests/citus_support.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg
import pytest

from service.db import q
from service.ledger.service import seal_all
from tests import citus_support
from tests.helpers import Client, award, community, transfer


@pytest.fixture(autouse=True)
def _only_on_citus(citus: bool) -> None:
    if not citus:
        pytest.skip("needs DATABASE_URL naming a Citus coordinator (docs/scaling.md)")


GLOBAL = {"communities", "api_keys", "app_sessions", "districts", "settlements"}
LOCAL = {"schema_migrations", "schema_functions"}


async def placement(
    conn: asyncpg.Connection, table: str, community_id: str
) -> tuple[str, int, str]:
    """The node (host, port) holding `community_id`'s shard of `table`, and the shard's name."""
    row = await conn.fetchrow(
        """SELECT s.nodename, s.nodeport, s.shard_name::text AS shard
             FROM citus_shards s
            WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::text)""",
        table,
        community_id,
    )
    assert row is not None
    return row["nodename"], row["nodeport"], row["shard"]


async def on_node(dsn: str, host: str, port: int) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    return await asyncpg.connect(citus_support._node_dsn(dsn, host, port, database))


async def test_every_community_table_is_distributed_colocated(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = {
            r["relname"]
            for r in await conn.fetch(
                """SELECT relname::text FROM pg_class
                    WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"""
            )
        }
        dist = {
            r["t"]: r
            for r in await conn.fetch(
                """SELECT logicalrelid::regclass::text AS t, partmethod::text, repmodel::text,
                          colocationid, column_to_column_name(logicalrelid, partkey) AS col
                     FROM pg_dist_partition"""
            )
        }
        functions = await conn.fetch(
            """SELECT p.proname::text AS name, o.distribution_argument_index AS arg,
                      o.colocationid, o.force_delegation
                 FROM pg_proc p
                 LEFT JOIN pg_dist_object o
                        ON o.classid = 'pg_proc'::regclass AND o.objid = p.oid
                WHERE p.pronamespace = 'public'::regnamespace
                  AND 'p_community' = ANY (p.proargnames)"""
        )
    finally:
        await conn.close()
    community_tables = tables - GLOBAL - LOCAL
    assert community_tables and community_tables <= set(dist)
    assert {dist[t]["partmethod"] for t in community_tables} == {"h"}
    assert {dist[t]["col"] for t in community_tables} == {"community_id"}
    assert len({dist[t]["colocationid"] for t in community_tables}) == 1  # one colocation group
    for t in GLOBAL & tables:
        assert (dist[t]["partmethod"], dist[t]["repmodel"]) == ("n", "t"), t  # reference
    assert not (LOCAL & set(dist))
    group = dist["transactions"]["colocationid"]
    assert functions
    for f in functions:
        assert (f["arg"], f["colocationid"], f["force_delegation"]) == (0, group, True), f


async def two_communities_apart(conn: asyncpg.Connection) -> tuple[str, str]:
    """`green` and the first other id whose shards are on another worker."""
    home = await placement(conn, "transactions", "green")
    for n in range(100):
        other = f"blue{n}"
        if (await placement(conn, "transactions", other))[:2] != home[:2]:
            return "green", other
    raise AssertionError("every id hashed to one worker")


async def test_two_communities_live_on_different_workers(client: Client, dsn: str) -> None:
    """Each community's rows are in a shard on its own worker, and only there."""
    conn = await asyncpg.connect(dsn)
    try:
        green, other = await two_communities_apart(conn)
        await community(client, members=1)
        await award(client, "a1", "m0", 30)
        r = await client.post("/v1/communities", json={"id": other, "name": "Blue"})
        assert r.status_code == 201, r.text
        spots = {c: await placement(conn, "transactions", c) for c in (green, other)}
    finally:
        await conn.close()
    assert spots[green][:2] != spots[other][:2]
    for c, (host, port, shard) in spots.items():
        node = await on_node(dsn, host, port)
        try:
            rows = await node.fetch(f'SELECT DISTINCT community_id FROM "{shard}"')
            here = await node.fetchval("SELECT to_regclass($1) IS NOT NULL", shard)
        finally:
            await node.close()
        assert here
        assert {r["community_id"] for r in rows} <= {c}
    # green's writes are in green's shard on its worker
    host, port, shard = spots[green]
    node = await on_node(dsn, host, port)
    try:
        assert await node.fetchval(f'SELECT count(*) FROM "{shard}"') >= 2  # opening + award
    finally:
        await node.close()


async def test_a_write_runs_on_the_worker_of_its_community(client: Client, dsn: str) -> None:
    """The ledger's write engine is delegated, also inside a transaction block."""
    await community(client, members=1)
    conn = await asyncpg.connect(dsn)
    try:
        _, port, _ = await placement(conn, "transactions", "green")
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM communities")  # a transaction under way
            plan = await conn.fetch(
                "EXPLAIN (COSTS OFF) "
                + q("ledger_write")
                .replace("$1", "'green'")
                .replace("$2", "'[]'")
                .replace("$3", "false")
            )
            seal = await conn.fetch("EXPLAIN (COSTS OFF) SELECT ledger_seal('green', 10)")
    finally:
        await conn.close()
    for lines in (plan, seal):
        text = "\n".join(r[0] for r in lines)
        assert f"port={port}" in text, text
        assert "Task Count: 1" in text, text


async def test_entries_stay_append_only_on_the_worker(client: Client, dsn: str) -> None:
    """The append-only triggers are on the shards and fire on the worker, whether
    the statement comes through the coordinator or straight to the shard."""
    await community(client, members=1)
    await award(client, "a1", "m0", 30)
    conn = await asyncpg.connect(dsn)
    try:
        for statement in ("UPDATE entries SET amount = amount + 1", "DELETE FROM entries"):
            with pytest.raises(asyncpg.PostgresError) as refused:
                await conn.execute(statement)
            assert refused.value.sqlstate == "LG403"
        host, port, shard = await placement(conn, "entries", "green")
    finally:
        await conn.close()
    node = await on_node(dsn, host, port)
    try:
        await node.execute("SET citus.enable_manual_changes_to_shards = on")
        for statement in (f'UPDATE "{shard}" SET amount = amount + 1', f'DELETE FROM "{shard}"'):
            with pytest.raises(asyncpg.PostgresError) as refused:
                await node.execute(statement)
            assert refused.value.sqlstate == "LG403", statement
        assert await node.fetchval(f'SELECT count(*) FROM "{shard}"') >= 2
    finally:
        await node.close()


async def test_queued_writes_carry_the_workers_xid(client: Client, dsn: str) -> None:
    """`seal_queue.xid` is the xid of the writing transaction on the worker (what
    the sealer compares with that worker's snapshot), also for a row inserted
    through the coordinator, whose default would be the coordinator's xid."""
    await community(client, members=1)
    await award(client, "a1", "m0", 30)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO seal_queue (community_id, tx_id) VALUES ('green', -1)")
            host, port, shard = await placement(conn, "seal_queue", "green")
            through = await conn.fetchrow(
                """SELECT xid::text::bigint % 4294967296 AS xid, xmin::text::bigint AS xmin
                     FROM seal_queue WHERE community_id = 'green' AND tx_id = -1"""
            )
            coordinator = await conn.fetchval("SELECT pg_current_xact_id()::text::bigint")
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    node = await on_node(dsn, host, port)
    try:
        rows = await node.fetch(
            f"""SELECT tx_id, xid::text::bigint % 4294967296 AS xid, xmin::text::bigint AS xmin
                  FROM "{shard}" WHERE community_id = 'green'"""
        )
    finally:
        await node.close()
    assert through is not None
    assert len(rows) >= 2  # opening and award, written by the delegated engine
    for r in [*rows, through]:
        assert r["xid"] == r["xmin"], dict(r)
    assert through["xid"] != coordinator % 4294967296


class _Rollback(Exception):
    pass


async def test_sealing_and_the_audit_work_per_worker(client: Client, pool: asyncpg.Pool) -> None:
    await community(client, members=2)
    await award(client, "a1", "m0", 30)
    spend = transfer("t1", "member:m0:points", "member:m1:points", 10)
    assert (await client.post("/v1/communities/green/transactions", json=spend)).status_code == 201
    assert await seal_all(pool) >= 4
    r = await client.post("/v1/communities/green/audit/verify")
    if r.status_code == 405:
        r = await client.get("/v1/communities/green/audit/verify")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.text


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_FAR = datetime(2100, 1, 1, tzinfo=UTC)

# The reads a request of one community makes most, with arguments of the right
# types: each must run on that community's worker alone, as one task.
ONE_COMMUNITY_READS: dict[str, tuple[object, ...]] = {
    "account_get": ("green", "member:m0:points"),
    "account_entries": ("green", "member:m0:points", 2**62, _EPOCH, _FAR, 50),
    "member_balances_expiring": ("green", ["member:m0:points", "member:m0:minutes"]),
    "redemption_get": ("green", "r1"),
    "export_redemptions": ("green", None, _EPOCH, _FAR),
    "audit_unsealed": ("green",),
}


@pytest.mark.parametrize("query", sorted(ONE_COMMUNITY_READS))
async def test_a_read_of_one_community_is_one_task_on_its_worker(dsn: str, query: str) -> None:
    """A subquery correlated on the outer row's `community_id` (rather than on the
    community argument) made Citus send the balance read and the statement page to
    every shard: 32 tasks, measured at 60 balance reads/s in the benchmark."""
    conn = await asyncpg.connect(dsn)
    try:
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + q(query), *ONE_COMMUNITY_READS[query])
        )
    finally:
        await conn.close()
    counts = [int(n) for n in re.findall(r"Task Count: (\d+)", plan)]
    assert counts and max(counts) == 1, plan
