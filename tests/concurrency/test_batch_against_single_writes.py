"""Batches under real concurrency: batches over the same members in
opposite orders, batches racing single writes with the same client ids, and a
duplicate that commits while a batch is being written."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from service.db import unit_of_work
from service.ledger import store
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.posting import plan_create
from service.setup import create_community, create_household, create_member
from tests.concurrency.common import waiting_on_a_transaction
from tests.helpers import BATCH, ISSUANCE, STORE, C, balance, community, transfer


async def test_overlapping_batches_in_opposite_orders(api: httpx.AsyncClient) -> None:
    """Each batch credits, spends and moves points among the same 20 members, half of
    them in reverse order: no deadlock, every item applied once, sums exact."""
    await community(api, members=20)

    def batch(k: int) -> list[dict[str, Any]]:
        order = list(range(20)) if k % 2 else list(reversed(range(20)))
        items = [transfer(f"c{k}-{m}", ISSUANCE, f"member:m{m}:points", 10 + k) for m in order]
        items += [transfer(f"s{k}-{m}", f"member:m{m}:points", STORE, 4) for m in order]
        items += [
            transfer(f"x{k}-{m}", f"member:m{m}:points", f"member:m{(m + 1) % 20}:points", 6)
            for m in order
        ]
        return items

    rs = await asyncio.gather(*(api.post(BATCH, json={"transactions": batch(k)}) for k in range(8)))
    assert [r.status_code for r in rs] == [200] * 8, [r.text[:300] for r in rs]
    assert {x["status"] for r in rs for x in r.json()["results"]} == {201}
    expected = 100 + sum(10 + k for k in range(8)) - 8 * 4
    for m in range(20):
        assert (await balance(api, f"m{m}"))["points"]["score"] == expected


async def test_a_batch_racing_single_writes_of_the_same_ids(api: httpx.AsyncClient) -> None:
    """The same 60 transfers sent as one batch and as 60 single requests at once:
    each happens once; every other answer is a replay of it."""
    await community(api, members=6)
    bodies = [transfer(f"t{i}", ISSUANCE, f"member:m{i % 6}:points", 1 + i % 4) for i in range(60)]
    bodies += [transfer(f"s{m}", f"member:m{m}:points", STORE, 1) for m in range(6)]
    singles = [api.post(f"{C}/transactions", json=b) for b in bodies]
    batch = api.post(BATCH, json={"transactions": bodies})
    *single_rs, batch_r = await asyncio.gather(*singles, batch)
    assert batch_r.status_code == 200, batch_r.text
    items = batch_r.json()["results"]
    for body, single, item in zip(bodies, single_rs, items, strict=True):
        statuses = Counter([single.status_code, item["status"]])
        if body["id"].startswith("s"):  # a spend may meet a balance the credits have not
            assert statuses in (
                Counter({201: 1, 200: 1}),
                Counter({409: 2}),
                Counter({201: 1, 409: 1}),
            )
            continue
        assert statuses == Counter({201: 1, 200: 1}), (body["id"], single.text, item)
        assert single.json() == item["transaction"]
    spent = {
        b["id"]
        for b, s, i in zip(bodies, single_rs, items, strict=True)
        if 201 in (s.status_code, i["status"])
    }
    for m in range(6):
        credited = sum(1 + i % 4 for i in range(60) if i % 6 == m)
        score = 100 + credited - (1 if f"s{m}" in spent else 0)
        assert (await balance(api, f"m{m}"))["points"]["score"] == score


async def test_a_batch_racing_single_writes_with_other_bodies(api: httpx.AsyncClient) -> None:
    """Same ids, different amounts: for each id one request wins, the other is 409."""
    await community(api, members=4)
    batch_bodies = [transfer(f"t{i}", ISSUANCE, f"member:m{i % 4}:points", 2) for i in range(40)]
    single_bodies = [transfer(f"t{i}", ISSUANCE, f"member:m{i % 4}:points", 3) for i in range(40)]
    singles = [api.post(f"{C}/transactions", json=b) for b in single_bodies]
    *single_rs, batch_r = await asyncio.gather(
        *singles, api.post(BATCH, json={"transactions": batch_bodies})
    )
    won = Counter({m: 0 for m in range(4)})
    for i, (single, item) in enumerate(zip(single_rs, batch_r.json()["results"], strict=True)):
        assert sorted([single.status_code, item["status"]]) == [201, 409], (i, single.text, item)
        won[i % 4] += 3 if single.status_code == 201 else 2
    for m in range(4):
        assert (await balance(api, f"m{m}"))["points"]["score"] == 100 + won[m]


# --- a duplicate that commits while the batch writes ---------------------------------


def _planned(client_id: str, source: str, destination: str, amount: int) -> store.Write:
    tx = NewTransaction(
        client_id=client_id,
        postings=(Posting(source=source, destination=destination, asset="points", amount=amount),),
        request_hash=f"{source}>{destination}:{amount}".encode(),
    )
    return store.create_write(tx, plan_create(tx.postings, RuleParams(), pending=False))


@pytest.mark.parametrize("other_commits", [True, False])
async def test_a_duplicate_written_meanwhile(pool: asyncpg.Pool, other_commits: bool) -> None:
    """Another transaction writes one of the batch's client ids after the batch
    looked them up: the batch waits for it; if it commits, the batch fails with a
    serialization failure and its unit of work runs it again, which finds the item
    a replay; if it rolls back, the batch writes the item itself. Either way every
    other item is written, once."""
    async with pool.acquire() as setup:
        await create_community(setup, "green", "Green", "Asia/Shanghai", b"c")
        await create_household(setup, "green", "h0", None, "acme", b"h")
        for m in range(5):
            await create_member(
                setup, "green", f"m{m}", "h0", None, b"m", RuleParams(), language="zh-CN"
            )
    # Only accounts the community opened with it: the other writer locks nothing
    # and opens nothing that the batch would wait for before it checks client ids.
    dup = _planned("dup", ISSUANCE, "system:adjustments:points", 7)
    items = [_planned(f"t{i}", ISSUANCE, f"member:m{i % 5}:points", 2) for i in range(20)]
    items.insert(10, dup)
    async with pool.acquire() as other, pool.acquire() as conn:
        writer = other.transaction()
        await writer.start()
        [first] = await store.write(other, "green", [dup])
        assert first.outcome == "created"
        batch = asyncio.create_task(
            unit_of_work(conn, lambda: store.write(conn, "green", items), atomic=False)
        )
        await waiting_on_a_transaction(pool, conn.get_server_pid(), "batch")
        await (writer.commit() if other_commits else writer.rollback())
        created = await batch
    outcomes = [c.outcome for c in created]
    assert (
        outcomes == ["created"] * 10 + ["replay" if other_commits else "created"] + ["created"] * 10
    )
    if other_commits:
        assert created[10].row_id == first.row_id
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT posted FROM accounts WHERE community_id = 'green' AND member_id IS NOT NULL"
            " AND asset = 'points' ORDER BY address"
        )
        assert [r["posted"] for r in rows] == [108] * 5
        count = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE community_id = 'green' AND client_id = 'dup'"
        )
        assert count == 1
        # Every row is the statement's own transaction's: no subtransaction.
        apart = await conn.fetch(
            "SELECT t.xmin::text <> q.xid::xid::text AS apart"
            "  FROM transactions t"
            "  JOIN seal_queue q ON q.community_id = t.community_id AND q.tx_id = t.id"
            " WHERE t.community_id = 'green' AND t.client_id LIKE 't%'"
        )
        assert {r["apart"] for r in apart} == {False}
