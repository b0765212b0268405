"""Two communities of one district, for the district network's tests (SPEC section
16): `green` (members m0, m1) and `blue` (members b0, b1), district `d1`, and a
district-wide store `s1` of `blue` with soap (5 points) and oil (20 points)."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, award, bearer, community

GREEN = "/v1/communities/green"
BLUE = "/v1/communities/blue"
D1 = "/v1/districts/d1"


async def two_communities(client: Client, *, stock: int = 10) -> None:
    await community(client)
    r = await client.post("/v1/communities", json={"id": "blue", "name": "Blue Court"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{BLUE}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    for m in ("b0", "b1"):
        r = await client.post(f"{BLUE}/members", json={"id": m, "household": "h0"})
        assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/districts", json={"id": "d1", "name": "Taihe", "communities": ["green", "blue"]}
    )
    assert r.status_code == 201, r.text
    for where in (GREEN, BLUE):
        r = await client.put(f"{where}/stores/s1", json={"name": "Love", "district_wide": True})
        assert r.status_code == 201, r.text
        for sku, points in (("soap", 5), ("oil", 20)):
            body = {"name": sku.title(), "points": points, "stock": stock}
            r = await client.put(f"{where}/stores/s1/items/{sku}", json=body)
            assert r.status_code == 201, r.text
    await award(client, "seed-m0", "m0", 100)


async def award_blue(client: Client, tx_id: str, member: str, amount: int) -> None:
    posting = {
        "source": "system:issuance:points",
        "destination": f"member:{member}:points",
        "asset": "points",
        "amount": amount,
    }
    r = await client.post(f"{BLUE}/transactions", json={"id": tx_id, "postings": [posting]})
    assert r.status_code == 201, r.text


async def key(client: Client, **scope: Any) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json=scope)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def spend_code(client: Client, where: str, member: str, max_points: int) -> str:
    r = await client.post(f"{where}/members/{member}/spend-codes", json={"max_points": max_points})
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


def basket(rid: str, member: str, member_community: str | None, **items: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "store": "s1",
        "member": member,
        "items": [{"sku": s, "qty": q} for s, q in items.items()],
    }
    if member_community is not None:
        body["member_community"] = member_community
    return body


async def account(client: Client, where: str, address: str) -> int:
    r = await client.get(f"{where}/accounts/{address}")
    if r.status_code == 404:  # opened on first use: nothing moved through it yet
        return 0
    assert r.status_code == 200, r.text
    posted: int = r.json()["posted"]
    return posted
