"""Expiry and sealing jobs: each effect exactly once, however many processes run them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg

from service.db import create_pool
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.service import create_transaction, expire_due, seal_all
from tests.helpers import ACME_OFFSETS, C, Client, award, balance, community, transfer


def hold(tx_id: str, member: str, amount: int, ttl_s: int | None = 1) -> dict[str, object]:
    pending = {} if ttl_s is None else {"ttl_s": ttl_s}
    return transfer(tx_id, f"member:{member}:points", ACME_OFFSETS, amount, pending=pending)


async def create(client: Client, body: dict[str, object]) -> None:
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


def soon(seconds: float = 5) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@asynccontextmanager
async def processes(dsn: str, count: int = 2) -> AsyncIterator[list[asyncpg.Pool]]:
    """Separate pools, as separate service processes would each have."""
    pools = [await create_pool(dsn, min_size=1, max_size=2) for _ in range(count)]
    try:
        yield pools
    finally:
        await asyncio.gather(*(p.close() for p in pools))


async def test_expiry_voids_a_due_hold_and_releases_it(client: Client, pool: asyncpg.Pool) -> None:
    """A hold past its ttl is voided with void_reason "expired" and its points released;
    holds not yet due, or without a ttl, stay pending."""
    await community(client, members=1)
    await award(client, "a1", "m0", 50)
    await create(client, hold("due", "m0", 20))
    await create(client, hold("later", "m0", 5, ttl_s=60))
    await create(client, hold("no-ttl", "m0", 5, ttl_s=None))
    assert await expire_due(pool, now=soon()) == 1
    due = (await client.get(f"{C}/transactions/due")).json()
    assert (due["status"], due["void_reason"]) == ("voided", "expired")
    assert (await balance(client, "m0"))["points"] == {
        "score": 150,
        "held": 10,
        "baseline": 100,
        "redeemable": 40,
        "expiring": [],
    }
    for tx_id in ("later", "no-ttl"):
        assert (await client.get(f"{C}/transactions/{tx_id}")).json()["status"] == "pending"
    assert await expire_due(pool, now=soon()) == 0


async def test_an_expired_hold_cannot_be_posted_before_the_job_runs(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Once its ttl has passed a hold cannot be posted (409 invalid_state), even though the
    expiry job has not voided it yet; the job then does."""
    await community(client, members=1)
    await award(client, "a1", "m0", 50)
    await create(client, hold("h1", "m0", 20))
    await asyncio.sleep(1.2)
    r = await client.post(f"{C}/transactions/h1/post")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state", r.text
    assert (await balance(client, "m0"))["points"]["held"] == 20
    assert await expire_due(pool) == 1
    h1 = (await client.get(f"{C}/transactions/h1")).json()
    assert (h1["status"], h1["void_reason"]) == ("voided", "expired")
    assert (await balance(client, "m0"))["points"] == {
        "score": 150,
        "held": 0,
        "baseline": 100,
        "redeemable": 50,
        "expiring": [],
    }


async def test_two_expiry_processes_void_each_hold_once(client: Client, dsn: str) -> None:
    """Two processes, two workers each, expiring the same 30 due holds: each hold is voided
    once, their counts sum to 30, and every point held is released exactly once."""
    members = ["m0", "m1", "m2"]
    await community(client, members=len(members))
    for m in members:
        await award(client, f"a-{m}", m, 50)
    ids = [f"h{i}" for i in range(30)]
    for i, tx_id in enumerate(ids):
        await create(client, hold(tx_id, members[i % 3], 1 + i % 4))
    later = soon()
    async with processes(dsn) as pools:
        counts = await asyncio.gather(*(expire_due(p, now=later) for p in pools * 2))
    assert sum(counts) == 30, counts
    for tx_id in ids:
        tx = (await client.get(f"{C}/transactions/{tx_id}")).json()
        assert (tx["status"], tx["void_reason"]) == ("voided", "expired")
    for m in members:
        assert (await balance(client, m))["points"] == {
            "score": 150,
            "held": 0,
            "baseline": 100,
            "redeemable": 50,
            "expiring": [],
        }


async def write_transfers(pool: asyncpg.Pool, member: str, count: int) -> None:
    """Posts `count` issuances to `member` through the real write path, one at a time."""
    for n in range(count):
        posting = Posting(
            source="system:issuance:points",
            destination=f"member:{member}:points",
            asset="points",
            amount=1 + n % 3,
        )
        tx = NewTransaction(client_id=f"w-{member}-{n}", postings=(posting,), request_hash=b"w")
        async with pool.acquire() as conn:
            await create_transaction(conn, "green", tx, RuleParams())


async def seal_until(pool: asyncpg.Pool, writers_done: asyncio.Event) -> int:
    """A sealing process: seals in small batches while writes go on, then once more."""
    sealed = 0
    while not writers_done.is_set():
        sealed += await seal_all(pool, batch=5)
        await asyncio.sleep(0.005)
    return sealed + await seal_all(pool, batch=5)


async def test_two_sealing_processes_seal_each_transaction_once(
    client: Client, pool: asyncpg.Pool, dsn: str
) -> None:
    """Two sealers racing each other and four writers: every final transaction is sealed
    exactly once, in one gapless chain that verifies; pending ones wait unsealed."""
    members = ["m0", "m1", "m2", "m3"]
    await community(client, members=len(members))
    await create(
        client, transfer("kept", "system:issuance:points", "member:m0:points", 1, pending={})
    )
    writers_done = asyncio.Event()
    async with processes(dsn) as pools:
        sealers = [asyncio.create_task(seal_until(p, writers_done)) for p in pools]
        await asyncio.gather(*(write_transfers(pool, m, 15) for m in members))
        writers_done.set()
        counts = await asyncio.gather(*sealers)
    async with pool.acquire() as conn:
        final = await conn.fetchval("SELECT count(*) FROM transactions WHERE status <> 'pending'")
        seals = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT tx_id) AS txs, min(seq) AS first,"
            " max(seq) AS last FROM seals WHERE community_id = 'green'"
        )
        kept = await conn.fetchval(
            "SELECT count(*) FROM seals s JOIN transactions t"
            " ON t.community_id = s.community_id AND t.id = s.tx_id WHERE t.client_id = 'kept'"
        )
    assert final == len(members) * 16  # each member's opening and 15 transfers
    assert sum(counts) == final, counts
    assert dict(seals) == {"n": final, "txs": final, "first": 1, "last": final}
    assert kept == 0, "a pending transaction was sealed"
    assert await seal_all(pool) == 0, "a final transaction was left unsealed"
    assert (await client.get(f"{C}/audit/verify")).json()["ok"] is True
