"""What the concurrency tests share: firing many requests at once, and waiting for a
writer to wait on another."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from service.db import on_citus
from tests.helpers import C


async def post_all(api: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POSTs every body to /transactions at once; responses in the order of `bodies`."""
    return list(await asyncio.gather(*(api.post(f"{C}/transactions", json=b) for b in bodies)))


def send(api: httpx.AsyncClient, body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
    """Starts one POST to /transactions without waiting for it."""
    return asyncio.create_task(api.post(f"{C}/transactions", json=body))


async def waiting_on_a_transaction(pool: asyncpg.Pool, pid: int, who: str) -> None:
    """Returns once backend `pid` waits for another transaction (a row or key it
    wants); fails the test if it never does.

    On Citus (docs/scaling.md) the coordinator's backend `pid` only waits for the
    worker: the use case's function call is delegated to the worker that holds the
    community, and the wait for the other writer is that of the worker's backend
    running it. Both carry the coordinator backend's global pid, so the probe looks
    for that gpid in `citus_stat_activity`, which shows every node's backends."""
    query = "SELECT wait_event FROM pg_stat_activity WHERE pid = $1"
    if await on_citus(pool):
        query = """SELECT wait_event FROM citus_stat_activity
                    WHERE global_pid = citus_calculate_gpid(
                              (SELECT nodeid FROM pg_dist_node WHERE groupid = 0), $1)
                    ORDER BY wait_event = 'transactionid' DESC NULLS LAST
                    LIMIT 1"""
    async with pool.acquire() as conn:
        for _ in range(500):
            if await conn.fetchval(query, pid) == "transactionid":
                return
            await asyncio.sleep(0.01)
    pytest.fail(f"the {who} never waited for the other writer")
