"""Batches running at once, touching the same members in opposite orders, never deadlock."""

import asyncio

import httpx

from tests.helpers import C, community, transfer


async def test_concurrent_batches_do_not_deadlock(api: httpx.AsyncClient) -> None:
    await community(api, members=30)

    async def batch(k: int):
        order = list(range(30)) if k % 2 else list(reversed(range(30)))
        items = [
            transfer(f"b{k}-{i}", "system:issuance:points", f"member:m{i}:points", 1) for i in order
        ]
        items += [
            transfer(f"s{k}-{i}", f"member:m{i}:points", "store:s1:redemptions", 1) for i in order
        ]
        return await api.post(f"{C}/transactions:batch", json={"transactions": items})

    rs = await asyncio.gather(*(batch(k) for k in range(8)))
    assert [r.status_code for r in rs] == [200] * 8, [r.text[:300] for r in rs]
    assert all(x["status"] == 201 for r in rs for x in r.json()["results"])
