"""The schema: migrations apply once under racing runners, every named query
prepares, every key leads with the community id."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.db import function_files, migrate, migration_files, queries
from tests.conftest import with_database
from tests.helpers import C, award, community


async def test_every_named_query_prepares(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for name, sql in queries().items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as err:  # pragma: no cover - the failure message
                pytest.fail(f"query {name}: {err}")


async def test_racing_migration_runners_apply_each_file_once(server_dsn: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute("DROP DATABASE IF EXISTS race_migrations WITH (FORCE)")
        await admin.execute("CREATE DATABASE race_migrations")
    finally:
        await admin.close()
    dsn = with_database(server_dsn, "race_migrations")
    applied = await asyncio.gather(*(migrate(dsn) for _ in range(3)))
    names = [p.name for p in migration_files()]
    functions = [f"functions/{p.name}" for p in function_files()]
    assert sorted(name for run in applied for name in run) == sorted(names + functions)
    assert await migrate(dsn) == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(names)
        assert await conn.fetchval("SELECT count(*) FROM schema_functions") == len(functions)
    finally:
        await conn.close()
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute("DROP DATABASE race_migrations WITH (FORCE)")
    finally:
        await admin.close()


# Web-app sessions are global as keys are: a cookie names no community. Districts
# and their settlements span communities (reference tables on Citus).
GLOBAL_TABLES = {
    "communities",
    "districts",
    "settlements",
    "api_keys",
    "app_sessions",
    "schema_migrations",
    "schema_functions",
}


async def test_every_key_leads_with_the_community_id(dsn: str) -> None:
    # A connection of its own, not the service's: on Citus the service's sessions
    # see the shards in pg_class (sql/citus/distribute.sql), and the catalog of the
    # coordinator holds the reference tables' shards, which are not tables of the
    # schema. Other sessions see no shards.
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT c.conrelid::regclass::text AS tbl, c.conname,
                      (SELECT a.attname FROM pg_attribute a
                        WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) AS first
                 FROM pg_constraint c
                 JOIN pg_namespace n ON n.oid = c.connamespace AND n.nspname = 'public'
                 JOIN pg_class t ON t.oid = c.conrelid  -- (Citus hides its shards here)
                WHERE c.contype IN ('p', 'u')"""
        )
    finally:
        await conn.close()
    assert rows
    for row in rows:
        if row["tbl"] in GLOBAL_TABLES:
            continue
        assert row["first"] == "community_id", (
            f"{row['tbl']}.{row['conname']} leads with {row['first']}"
        )


async def test_a_transaction_is_reversed_at_most_once_by_the_schema_itself(
    client: AsyncTestClient[Any], pool: asyncpg.Pool
) -> None:
    """Behind the service's own check, the database refuses a second reversal."""
    await community(client)
    await award(client, "a1", "m0", 5)
    r = await client.post(f"{C}/transactions/a1/reverse")
    assert r.status_code == 201, r.text
    reversal = await pool.fetchrow(
        "SELECT request_hash, kind, status, reversal_of FROM transactions"
        " WHERE community_id = 'green' AND reversal_of IS NOT NULL"
    )
    assert reversal is not None
    # VALUES, not INSERT … SELECT: Citus runs that one by pulling the rows to the
    # coordinator and copying them back, and reports the shard's unique violation
    # as an internal error (XX000) instead of 23505 (docs/scaling.md).
    insert = """
        INSERT INTO transactions (community_id, client_id, request_hash, kind, status,
                                  finalized_at, reversal_of)
        VALUES ('green', $1, $2, $3, $4, now(), $5)"""
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(insert, "r2", *reversal)
    # Other transactions share the NULL freely (the key is partial).
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE community_id = 'green' AND reversal_of IS NULL"
        )
        > 2
    )


@pytest.mark.parametrize("start", ["infinity", "-infinity"])
async def test_a_rule_set_starts_at_a_finite_instant_by_the_schema_itself(
    client: AsyncTestClient[Any], pool: asyncpg.Pool, start: str
) -> None:
    """Behind the service's own check: asyncpg reads an infinite timestamptz back
    without an offset, which the rule book cannot compare with now."""
    await community(client)
    insert = """
        INSERT INTO rule_sets (community_id, version, document, source, media_type,
                               effective_from)
        VALUES ('green', 1, '{}', '{}', 'application/json', $1::text::timestamptz)"""
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(insert, start)
