"""Concurrent debits of members never exceed what they may redeem, and never deadlock."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from tests.concurrency.common import post_all
from tests.helpers import STORE, C, award, balance, community, transfer


async def test_forty_spends_of_five_take_exactly_the_fifty_redeemable(
    api: httpx.AsyncClient,
) -> None:
    """40 concurrent spends of 5 against 50 redeemable: exactly 10 succeed, 30 are refused whole."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    bodies = [transfer(f"s{i}", "member:m0:points", STORE, 5) for i in range(40)]
    responses = await post_all(api, bodies)
    assert Counter(r.status_code for r in responses) == {201: 10, 409: 30}
    refused = [b["id"] for b, r in zip(bodies, responses, strict=True) if r.status_code == 409]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_points"}
    assert (await balance(api, "m0"))["points"] == {
        "score": 100,
        "held": 0,
        "baseline": 100,
        "redeemable": 0,
        "expiring": [],
    }
    assert (await api.get(f"{C}/accounts/{STORE}")).json()["posted"] == 50
    lookups = await asyncio.gather(*(api.get(f"{C}/transactions/{i}") for i in refused))
    assert {r.status_code for r in lookups} == {404}, "a refused spend left a transaction behind"


async def test_uneven_spends_are_refused_only_when_they_do_not_fit(api: httpx.AsyncClient) -> None:
    """Spends of 1…9 points, some split over two stores, racing: none refused while it still fit."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    bodies = [_split_spend(f"s{i}", 1 + i % 9, split=i % 3 == 0) for i in range(30)]
    responses = await post_all(api, bodies)
    assert {r.status_code for r in responses} <= {201, 409}
    spent = sum(_amount(b) for b, r in zip(bodies, responses, strict=True) if r.status_code == 201)
    left = (await balance(api, "m0"))["points"]["redeemable"]
    assert left == 50 - spent >= 0
    # Redeemable only shrinks here, so every refusal asked for more than what is left now.
    for body, r in zip(bodies, responses, strict=True):
        if r.status_code == 409:
            assert r.json()["code"] == "insufficient_points"
            assert _amount(body) > left, f"{body['id']} was refused although {left} was left"


def _split_spend(tx_id: str, amount: int, *, split: bool) -> dict[str, Any]:
    if not split or amount < 2:
        return transfer(tx_id, "member:m0:points", STORE, amount)
    half = amount // 2
    body = transfer(tx_id, "member:m0:points", STORE, half)
    body["postings"].append(
        {
            "source": "member:m0:points",
            "destination": "store:s2:redemptions",
            "asset": "points",
            "amount": amount - half,
        }
    )
    return body


def _amount(body: dict[str, Any]) -> int:
    return sum(p["amount"] for p in body["postings"])


def _two_member_tx(tx_id: str, first: str, second: str) -> dict[str, Any]:
    """Debits `first` then `second` in posting order: `first` pays 3, receives 1, tips a store 1."""
    legs = [
        (f"member:{first}:points", f"member:{second}:points", 3),
        (f"member:{second}:points", f"member:{first}:points", 1),
        (f"member:{first}:points", STORE, 1),
    ]
    postings = [{"source": s, "destination": d, "asset": "points", "amount": a} for s, d, a in legs]
    return {"id": tx_id, "postings": postings}


def _net(bodies: list[dict[str, Any]], member: str) -> int:
    """What `member`'s score gains (or loses) if every body in `bodies` is posted."""
    address = f"member:{member}:points"
    return sum(
        p["amount"] * ((p["destination"] == address) - (p["source"] == address))
        for body in bodies
        for p in body["postings"]
    )


async def test_opposite_order_transfers_between_members_never_deadlock(
    api: httpx.AsyncClient,
) -> None:
    """m_i->m_j and m_j->m_i multi-posting transactions at once: all succeed, balances exact."""
    members = [f"m{i}" for i in range(4)]
    await community(api, members=len(members))
    await asyncio.gather(*(award(api, f"a-{m}", m, 100) for m in members))
    pairs = [(a, b) for a in members for b in members if a != b]
    bodies = [_two_member_tx(f"x{r}-{a}-{b}", a, b) for r in range(4) for a, b in pairs]
    responses = await post_all(api, bodies)
    assert [r.status_code for r in responses] == [201] * len(bodies), [
        r.text for r in responses if r.status_code != 201
    ]
    expected = {m: 200 + _net(bodies, m) for m in members}
    scores = {m: (await balance(api, m))["points"]["score"] for m in members}
    assert scores == expected
    assert (await api.get(f"{C}/accounts/{STORE}")).json()["posted"] == len(bodies)
