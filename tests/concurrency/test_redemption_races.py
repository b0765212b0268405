"""Concurrent redemptions: stock and points never oversold, each changed with the other."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

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
