"""Minutes under concurrency: conversions racing a small balance never overspend it,
and transfers between two members in both directions at once neither deadlock nor
lose a minute."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.helpers import C, balance, community, transfer


async def _bank(api: httpx.AsyncClient, tx_id: str, member: str, minutes: int) -> None:
    body = transfer(
        tx_id, "system:timebank:minutes", f"member:{member}:minutes", minutes, "minutes"
    )
    r = await api.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


async def test_twelve_conversions_race_for_five(api: httpx.AsyncClient) -> None:
    await community(api, members=1)
    await _bank(api, "b1", "m0", 60)
    responses = await asyncio.gather(
        *(
            api.post(f"{C}/conversions", json={"id": f"c{i}", "member": "m0", "minutes": 12})
            for i in range(12)
        )
    )
    assert Counter(r.status_code for r in responses) == {201: 5, 409: 7}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_points"}
    after = await balance(api, "m0")
    assert after["minutes"] == {"balance": 0, "held": 0, "expiring": []}
    assert after["points"]["score"] == 100 + 5 * 2  # 12 minutes at 10 points an hour


async def test_transfers_both_ways_at_once(api: httpx.AsyncClient) -> None:
    await community(api, members=2)
    await _bank(api, "b0", "m0", 100)
    await _bank(api, "b1", "m1", 100)
    bodies = [
        {
            "id": f"t{i}",
            "from_member": f"m{i % 2}",
            "to_member": f"m{1 - i % 2}",
            "minutes": 1 + i % 3,
        }
        for i in range(40)
    ]
    responses = await asyncio.gather(*(api.post(f"{C}/time-transfers", json=b) for b in bodies))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    moved = sum((1 if b["from_member"] == "m1" else -1) * b["minutes"] for b in bodies)
    assert (await balance(api, "m0"))["minutes"]["balance"] == 100 + moved
    assert (await balance(api, "m1"))["minutes"]["balance"] == 100 - moved
