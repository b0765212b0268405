"""A pooled connection that a refused query came back from is not reused (service/db.py,
`_Acquired`; docs/scaling.md, "Why some ids came from the coordinator").

On Citus 14.0 a query refused while Citus plans its subqueries recursively can leave
the backend unable to delegate a function call ever again: the use cases' calls then
run on the coordinator, statement by statement. The pool terminates a connection a
refusal escaped from, so the next unit of work gets a fresh backend. Skipped unless
DATABASE_URL names a Citus coordinator."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.db import create_pool, refused
from service.errors import NotFound
from tests.citus.test_ordering import POISON
from tests.helpers import Client, award, community


@pytest.fixture(autouse=True)
def _only_on_citus(citus: bool) -> None:
    if not citus:
        pytest.skip("needs DATABASE_URL naming a Citus coordinator (docs/scaling.md)")


async def _delegated(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> bool:
    """Whether Citus delegates a use-case function call made on `conn` inside a
    transaction block (the service's units of work) to a worker."""
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM communities")  # a transaction under way
        plan = await conn.fetch("EXPLAIN (COSTS OFF) SELECT ledger_seal('green', 10)")
    text = "\n".join(r[0] for r in plan)
    return "Task Count: 1" in text


async def _gone(dsn: str, pid: int) -> bool:
    """Whether backend `pid` has ended (within two seconds)."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(200):
            if not await conn.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
                return True
            await asyncio.sleep(0.01)
        return False
    finally:
        await conn.close()


async def test_without_the_guard_a_refusal_leaves_a_connection_that_never_delegates(
    client: Client, dsn: str
) -> None:
    """What the guard is for, shown on a plain connection."""
    await community(client, members=1)
    conn = await asyncpg.connect(dsn)
    try:
        assert await _delegated(conn)
        with pytest.raises(asyncpg.FeatureNotSupportedError):
            await conn.fetch(POISON)
        assert not await _delegated(conn)
    finally:
        await conn.close()


async def test_the_pool_drops_a_connection_a_refused_query_came_back_from(
    client: Client, dsn: str
) -> None:
    await community(client, members=1)
    pool = await create_pool(dsn, min_size=1, max_size=1, timeout_s=5)
    try:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
            assert await _delegated(conn)
        async with pool.acquire() as conn:  # a connection is reused while nothing failed
            assert conn.get_server_pid() == first
        with pytest.raises(asyncpg.FeatureNotSupportedError):
            async with pool.acquire() as conn:
                await conn.fetch(POISON)
        assert await _gone(dsn, first)
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != first
            assert await _delegated(conn)
        # Also when a refusal surfaces as a domain error raised from it, and for
        # the pool's own shortcuts (`pool.fetch`, which acquires the same way).
        async with pool.acquire() as conn:
            second = conn.get_server_pid()
        with pytest.raises(NotFound):
            async with pool.acquire() as conn:
                try:
                    await conn.fetch(POISON)
                except asyncpg.PostgresError as err:
                    raise NotFound("as a use case would turn it") from err
        assert await _gone(dsn, second)
        async with pool.acquire() as conn:
            third = conn.get_server_pid()
        with pytest.raises(asyncpg.FeatureNotSupportedError):
            await pool.fetch(POISON)
        assert await _gone(dsn, third)
        async with pool.acquire() as conn:
            assert await _delegated(conn)
    finally:
        await pool.close()


async def test_other_errors_keep_the_connection(client: Client, dsn: str) -> None:
    """A constraint or a guard refusing a write is an answer, not a broken backend."""
    await community(client, members=1)
    await award(client, "a1", "m0", 30)
    pool = await create_pool(dsn, min_size=1, max_size=1, timeout_s=5)
    try:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
        with pytest.raises(asyncpg.PostgresError) as err:
            async with pool.acquire() as conn:
                await conn.execute("UPDATE entries SET amount = amount + 1")
        assert err.value.sqlstate == "LG403" and not refused(err.value)
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first
    finally:
        await pool.close()
