"""Concurrent redemptions: stock and points never oversold, each changed with the other."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import httpx
import msgspec
import pytest

from service.errors import IdempotencyConflict
from service.ledger.model import RuleParams
from service.supermarket import service as market
from tests.concurrency.common import waiting_on_a_transaction
from tests.helpers import C, award, balance, community


def _redeem(rid: str, member: str, *items: tuple[str, int]) -> dict[str, object]:
    return {
        "id": rid,
        "store": "s1",
        "member": member,
        "items": [{"sku": s, "qty": q} for s, q in items],
    }


async def _item(api: httpx.AsyncClient, sku: str, points: int, stock: int) -> None:
    r = await api.put(
        f"{C}/stores/s1/items/{sku}", json={"name": sku, "points": points, "stock": stock}
    )
    assert r.status_code in (200, 201), r.text


async def _stock(api: httpx.AsyncClient) -> dict[str, int]:
    return {i["sku"]: i["stock"] for i in (await api.get(f"{C}/stores/s1/items")).json()["items"]}


async def test_stock_race_sells_exactly_what_is_on_the_shelf(api: httpx.AsyncClient) -> None:
    """20 members each redeem 1 of 7 soaps at once: exactly 7 succeed."""
    await community(api, members=20, households=4)
    for m in range(20):
        await award(api, f"a{m}", f"m{m}", 50)
    await _item(api, "soap", 5, 7)
    responses = await asyncio.gather(
        *(
            api.post(f"{C}/redemptions", json=_redeem(f"r{m}", f"m{m}", ("soap", 1)))
            for m in range(20)
        )
    )
    assert Counter(r.status_code for r in responses) == {201: 7, 409: 13}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"out_of_stock"}
    assert await _stock(api) == {"soap": 0}
    assert (await api.get(f"{C}/accounts/store:s1:redemptions")).json()["posted"] == 35


async def test_points_race_and_stock_move_together(api: httpx.AsyncClient) -> None:
    """One member with 30 redeemable sends 20 baskets of 5 points (two items) at once:
    exactly 6 succeed, and stock fell by exactly what they bought."""
    await community(api, members=1)
    await award(api, "a0", "m0", 30)
    await _item(api, "oil", 3, 100)
    await _item(api, "soap", 2, 100)
    baskets = [_redeem(f"r{i}", "m0", ("soap", 1), ("oil", 1)) for i in range(20)]
    responses = await asyncio.gather(*(api.post(f"{C}/redemptions", json=b) for b in baskets))
    assert Counter(r.status_code for r in responses) == {201: 6, 409: 14}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_points"}
    assert await _stock(api) == {"oil": 94, "soap": 94}
    assert (await balance(api, "m0"))["points"]["redeemable"] == 0


async def test_returns_racing_redemptions_keep_stock_and_points_exact(
    api: httpx.AsyncClient,
) -> None:
    """Returns of earlier redemptions overlap new ones, in both item orders: totals add up."""
    await community(api, members=2, households=1)
    await award(api, "a0", "m0", 100)
    await award(api, "a1", "m1", 100)
    await _item(api, "oil", 3, 10)
    await _item(api, "soap", 2, 10)
    for i in range(4):
        r = await api.post(
            f"{C}/redemptions", json=_redeem(f"old{i}", f"m{i % 2}", ("soap", 1), ("oil", 1))
        )
        assert r.status_code == 201, r.text
    calls = [api.post(f"{C}/redemptions/old{i}/return", json={"id": "x"}) for i in range(4)]
    calls += [api.post(f"{C}/redemptions/old{i}/return", json={"id": "x"}) for i in range(4)]
    calls += [
        api.post(f"{C}/redemptions", json=_redeem(f"new{i}", f"m{i % 2}", ("oil", 2), ("soap", 1)))
        for i in range(6)
    ]
    responses = await asyncio.gather(*calls)
    assert Counter(r.status_code for r in responses[:8]) == {201: 4, 200: 4}
    sold = sum(1 for r in responses[8:] if r.status_code == 201)
    assert {r.status_code for r in responses[8:]} <= {201, 409}
    assert await _stock(api) == {"oil": 10 - 2 * sold, "soap": 10 - sold}
    store = (await api.get(f"{C}/accounts/store:s1:redemptions")).json()["posted"]
    assert store == 8 * sold


async def test_one_id_sent_at_once_redeems_once(api: httpx.AsyncClient) -> None:
    """The same redemption sent 10 times at once: one 201, nine replays of it."""
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    await _item(api, "soap", 5, 10)
    body = _redeem("r1", "m0", ("soap", 2))
    responses = await asyncio.gather(*(api.post(f"{C}/redemptions", json=body) for _ in range(10)))
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 9}
    assert all(r.json() == responses[0].json() for r in responses)
    assert await _stock(api) == {"soap": 8}
    assert (await balance(api, "m0"))["points"]["redeemable"] == 90


async def test_one_id_for_other_baskets_at_once_redeems_once(api: httpx.AsyncClient) -> None:
    """One id with 8 baskets of different items at once: no item lock orders them,
    the redemption's key does. One is written; the others conflict and take nothing."""
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    for i in range(8):
        await _item(api, f"sku{i}", 1 + i, 10)
    responses = await asyncio.gather(
        *(api.post(f"{C}/redemptions", json=_redeem("r1", "m0", (f"sku{i}", 1))) for i in range(8))
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 7}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"idempotency_conflict"}
    [won] = [r.json() for r in responses if r.status_code == 201]
    sku = won["items"][0]["sku"]
    assert await _stock(api) == {f"sku{i}": 9 if f"sku{i}" == sku else 10 for i in range(8)}
    assert (await balance(api, "m0"))["points"]["redeemable"] == 100 - won["points"]
    got = await api.get(f"{C}/redemptions/r1")
    assert got.json() == won


async def test_returns_without_ids_at_once_are_numbered_and_never_too_many(
    api: httpx.AsyncClient,
) -> None:
    """Five returns of one soap each, at once, from a redemption of three: each waits
    for the redemption's lock, then sees the returns before it. Three are made,
    numbered auto:1 … auto:3; two find nothing left of the soap."""
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    await _item(api, "soap", 2, 10)
    r = await api.post(f"{C}/redemptions", json=_redeem("r1", "m0", ("soap", 3)))
    assert r.status_code == 201, r.text
    back = {"items": [{"sku": "soap", "qty": 1}]}
    responses = await asyncio.gather(
        *(api.post(f"{C}/redemptions/r1/return", json=back) for _ in range(5))
    )
    assert Counter(r.status_code for r in responses) == {201: 3, 409: 2}
    made = sorted(r.json()["id"] for r in responses if r.status_code == 201)
    assert made == ["auto:1", "auto:2", "auto:3"]
    assert {r.json()["returnable"] for r in responses if r.status_code == 409} == {0}
    assert await _stock(api) == {"soap": 10}
    assert (await balance(api, "m0"))["points"]["redeemable"] == 100


@pytest.mark.parametrize("other_commits", [True, False])
async def test_an_id_written_meanwhile_with_another_basket(
    api: httpx.AsyncClient, pool: asyncpg.Pool, other_commits: bool
) -> None:
    """Another transaction writes the same redemption id for another basket after
    this one found the id free (no item lock orders them): this one waits on the
    id's key; if the other commits, this is the same conflict as when the id is
    found at once, with nothing taken; if it rolls back, this one is written."""
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    await _item(api, "oil", 3, 10)
    await _item(api, "soap", 2, 10)
    soap = market.NewRedemption(
        id="r1", store="s1", member="m0", items={"soap": 1}, request_hash=b"soap", actor=None
    )
    oil = msgspec.structs.replace(soap, items={"oil": 1}, request_hash=b"oil")
    async with pool.acquire() as other, pool.acquire() as conn:
        writer = other.transaction()
        await writer.start()
        # The use case's work without its unit of work, so that it stays open.
        await market._redeem(other, "green", soap, RuleParams(), "zh-CN")
        racing = asyncio.create_task(
            market.redeem(conn, "green", oil, RuleParams(), language="zh-CN")
        )
        await waiting_on_a_transaction(pool, conn.get_server_pid(), "redemption")
        await (writer.commit() if other_commits else writer.rollback())
        if other_commits:
            with pytest.raises(IdempotencyConflict):
                await racing
        else:
            written, replayed = await racing
            assert (written.points, replayed) == (3, False)
    assert await _stock(api) == (
        {"oil": 10, "soap": 9} if other_commits else {"oil": 9, "soap": 10}
    )
    redeemable = (await balance(api, "m0"))["points"]["redeemable"]
    assert redeemable == (98 if other_commits else 97)
