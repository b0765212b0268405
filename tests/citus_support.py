"""Running the suite against a Citus cluster (docs/scaling.md, "Tests on a cluster").

When DATABASE_URL names a Citus coordinator (its database has the `citus`
extension and workers in `pg_dist_node`), tests/conftest.py does not copy a
template database per test: `CREATE DATABASE … TEMPLATE` makes a database on the
coordinator only, without the shards and without the extension on the workers.
Instead one database is made per run on every node (Citus 12+ propagates
`CREATE DATABASE` with `citus.enable_create_database_propagation`; the extension
and the node list are then set up in it), migrated once (which distributes it),
and emptied after each test by truncating its shards on every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from tests.helpers import TEMPLATE, admin_sql, with_database

# Few shards per table: creating them is most of what `migrate` costs on a
# cluster (32 per table by default, about 1,100 in all), and a test needs no more.
SHARD_COUNT = 4


async def is_citus(server_dsn: str) -> bool:
    """Whether `server_dsn` is a Citus coordinator with at least one worker."""
    conn = await asyncpg.connect(server_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
            return False
        return bool(await conn.fetchval("SELECT count(*) FROM pg_dist_node WHERE groupid <> 0"))
    finally:
        await conn.close()


def _node_dsn(server_dsn: str, host: str, port: int, database: str) -> str:
    parts = urlsplit(with_database(server_dsn, database))
    user = parts.username or "postgres"
    return parts._replace(netloc=f"{user}@{host}:{port}").geturl()


async def create_database(server_dsn: str, name: str) -> str:
    """Database `name` on the coordinator and every worker, with the `citus`
    extension and the cluster's nodes; returns its dsn on the coordinator."""
    conn = await asyncpg.connect(server_dsn)
    try:
        coordinator = await conn.fetchrow(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 0"
        )
        workers = await conn.fetch(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY groupid"
        )
        assert coordinator is not None, "no coordinator in pg_dist_node"
        await conn.execute("SET citus.enable_create_database_propagation = on")
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    for w in workers:
        wc = await asyncpg.connect(_node_dsn(server_dsn, w["nodename"], w["nodeport"], name))
        try:
            await wc.execute("CREATE EXTENSION IF NOT EXISTS citus")
        finally:
            await wc.close()
    dsn = with_database(server_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        await conn.execute(f"ALTER DATABASE {name} SET citus.shard_count = {SHARD_COUNT}")
        await conn.execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            coordinator["nodename"],
            coordinator["nodeport"],
        )
        for w in workers:
            await conn.execute("SELECT citus_add_node($1, $2)", w["nodename"], w["nodeport"])
    finally:
        await conn.close()
    return dsn


async def drop_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute("SET citus.enable_create_database_propagation = on")
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def wipe(dsn: str) -> None:
    """Every row of every table gone, on every node, as after `migrate`.

    The shards are truncated where they live, as the superuser with
    `session_replication_role = replica` so that the append-only guards (TRUNCATE
    triggers) stand aside: through the coordinator, a TRUNCATE of `entries` is
    refused by them, and with the role set there Citus does not pass the
    TRUNCATE on to the shards at all. Citus refuses changes made to a shard
    directly unless `citus.enable_manual_changes_to_shards` is on. Test-only: the
    service never does this."""
    conn = await asyncpg.connect(dsn)
    try:
        placements = await conn.fetch(
            """SELECT nodename, nodeport, array_agg(shard_name::text) AS shards
                 FROM citus_shards GROUP BY nodename, nodeport"""
        )
        database = await conn.fetchval("SELECT current_database()")
        local = await conn.fetch(
            """SELECT c.relname FROM pg_class c
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                  AND c.relname NOT IN ('schema_migrations', 'schema_functions')
                  AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)"""
        )
    finally:
        await conn.close()
    for p in placements:
        nc = await asyncpg.connect(_node_dsn(dsn, p["nodename"], p["nodeport"], database))
        try:
            await nc.execute("SET session_replication_role = replica")
            await nc.execute("SET citus.enable_manual_changes_to_shards = on")
            names = ", ".join(f'"{s}"' for s in p["shards"])
            await nc.execute(f"TRUNCATE {names}")
        finally:
            await nc.close()
    if local:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("TRUNCATE " + ", ".join(f'"{r["relname"]}"' for r in local))
        finally:
            await conn.close()


async def shard_of(dsn: str, table: str, community: str) -> tuple[str, str, int]:
    """Where `community`'s rows of distributed table `table` live: the dsn of the
    node that holds its shard (same database), the shard's name and its id."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            """SELECT s.nodename, s.nodeport, s.shard_name::text AS name, s.shardid,
                      current_database() AS database
                 FROM citus_shards s
                WHERE s.shardid = get_shard_id_for_distribution_column($1, $2::text)""",
            table,
            community,
        )
    finally:
        await conn.close()
    assert row is not None, f"no shard of {table} for {community}"
    node = _node_dsn(dsn, row["nodename"], row["nodeport"], row["database"])
    return node, row["name"], row["shardid"]


@dataclass(frozen=True)
class Databases:
    """A database of its own for a test that needs one besides the `dsn` fixture's
    (an app under uvicorn for a whole module, each example of a property test). On
    one server a copy of the template, dropped when released; on Citus the run's
    one database (which nothing else uses meanwhile: tests run one at a time),
    emptied when released, as after every test."""

    server_dsn: str
    template_dsn: str
    citus: bool

    async def create(self, name: str) -> str:
        if self.citus:
            return self.template_dsn
        await admin_sql(
            self.server_dsn, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"
        )
        return with_database(self.server_dsn, name)

    async def drop(self, dsn: str) -> None:
        if self.citus:
            await wipe(dsn)
            return
        name = urlsplit(dsn).path.lstrip("/")
        await admin_sql(self.server_dsn, f"DROP DATABASE {name} WITH (FORCE)")
