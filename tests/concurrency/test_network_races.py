"""The district network under concurrency (SPEC section 16, docs/network.md): two
tills of two communities spending one member never overspend; one spend code pays
once; transfers in opposite directions between two communities never deadlock; a
return racing a settlement is settled exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import httpx

from tests.helpers import bearer
from tests.network_helpers import BLUE, D1, GREEN, account, award_blue, basket, two_communities


async def _key(api: httpx.AsyncClient, **scope: str) -> dict[str, str]:
    r = await api.post("/v1/api-keys", json=scope)
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def _redeemable(api: httpx.AsyncClient, where: str, member: str) -> int:
    r = await api.get(f"{where}/members/{member}/balance")
    value: int = r.json()["points"]["redeemable"]
    return value


async def test_two_tills_of_two_communities_never_overspend_one_member(
    api: httpx.AsyncClient,
) -> None:
    await two_communities(api, stock=100)  # type: ignore[arg-type]
    # m0 has 100 above the baseline: five bottles of oil at 20, whichever tills sell them.
    sales = [
        api.post(
            f"{where}/redemptions",
            json=basket(f"r{i}", "m0", None if where == GREEN else "green", oil=1),
        )
        for i, where in enumerate([GREEN, BLUE] * 10)
    ]
    answers = await asyncio.gather(*sales)
    codes = Counter((r.status_code, r.json().get("code")) for r in answers)
    assert codes == {(201, None): 5, (409, "insufficient_points"): 15}, codes
    assert await _redeemable(api, GREEN, "m0") == 0
    sold = 20 * sum(1 for r in answers if r.status_code == 201)
    green_store = await account(api, GREEN, "store:s1:redemptions")  # type: ignore[arg-type]
    blue_store = await account(api, BLUE, "store:s1:redemptions")  # type: ignore[arg-type]
    assert green_store + blue_store == sold == 100
    assert await account(api, GREEN, "interchange:blue:points") == blue_store  # type: ignore[arg-type]


async def test_one_spend_code_pays_once_at_two_communities_tills(api: httpx.AsyncClient) -> None:
    await two_communities(api)  # type: ignore[arg-type]
    blue_till = await _key(api, role="store", community="blue", store="s1")
    green_till = await _key(api, role="store", community="green", store="s1")
    for round_ in range(5):
        r = await api.post(f"{GREEN}/members/m0/spend-codes", json={"max_points": 10})
        consent = {"consent": {"spend_code": r.json()["code"]}}
        here = basket(f"g{round_}", "m0", None, soap=1) | consent
        there = basket(f"b{round_}", "m0", "green", soap=1) | consent
        answers = await asyncio.gather(
            api.post(f"{GREEN}/redemptions", json=here, headers=green_till),
            api.post(f"{BLUE}/redemptions", json=there, headers=blue_till),
        )
        assert sorted(r.status_code for r in answers) == [201, 403], [r.text for r in answers]
    assert await _redeemable(api, GREEN, "m0") == 100 - 5 * 5


async def test_transfers_in_opposite_directions_never_deadlock(api: httpx.AsyncClient) -> None:
    await two_communities(api)  # type: ignore[arg-type]
    for where, member in ((GREEN, "m0"), (BLUE, "b0")):
        posting = {
            "source": "system:timebank:minutes",
            "destination": f"member:{member}:minutes",
            "asset": "minutes",
            "amount": 600,
        }
        r = await api.post(f"{where}/transactions", json={"id": "seed", "postings": [posting]})
        assert r.status_code == 201, r.text

    def gift(i: int, where: str) -> object:
        if where == GREEN:
            body = {"from_member": "m0", "to_member": "b0", "to_member_community": "blue"}
        else:
            body = {"from_member": "b0", "to_member": "m0", "to_member_community": "green"}
        return api.post(f"{where}/time-transfers", json={"id": f"t{i}", "minutes": 10} | body)

    answers = await asyncio.gather(*(gift(i, w) for i in range(30) for w in (GREEN, BLUE)))
    assert Counter(r.status_code for r in answers) == {201: 60}, [
        r.text for r in answers if r.status_code != 201
    ]
    for where, member in ((GREEN, "m0"), (BLUE, "b0")):
        r = await api.get(f"{where}/members/{member}/balance")
        assert r.json()["minutes"]["balance"] == 600
    assert await account(api, GREEN, "interchange:blue:minutes") == 0  # type: ignore[arg-type]
    assert (await api.get(f"{D1}/audit/verify")).json()["ok"] is True


async def test_redemptions_in_opposite_directions_never_deadlock(api: httpx.AsyncClient) -> None:
    await two_communities(api, stock=100)  # type: ignore[arg-type]
    await award_blue(api, "seed-b0", "b0", 100)  # type: ignore[arg-type]
    sales = [
        api.post(f"{BLUE}/redemptions", json=basket(f"x{i}", "m0", "green", soap=1))
        for i in range(20)
    ] + [
        api.post(f"{GREEN}/redemptions", json=basket(f"y{i}", "b0", "blue", soap=1))
        for i in range(20)
    ]
    answers = await asyncio.gather(*sales)
    assert Counter(r.status_code for r in answers) == {201: 40}
    assert await _redeemable(api, GREEN, "m0") == 0
    assert await _redeemable(api, BLUE, "b0") == 0
    assert await account(api, GREEN, "interchange:blue:points") == 0  # type: ignore[arg-type]


async def test_a_return_racing_a_settlement_is_settled_exactly_once(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await two_communities(api, stock=100)  # type: ignore[arg-type]
    start = "2026-01-01T00:00:00+08:00"
    for i in range(8):
        r = await api.post(f"{BLUE}/redemptions", json=basket(f"r{i}", "m0", "green", soap=2))
        assert r.status_code == 201, r.text
        await asyncio.sleep(0.005)
        to = datetime.now(UTC).isoformat()
        back, settled = await asyncio.gather(
            api.post(
                f"{BLUE}/redemptions/r{i}/return", json={"items": [{"sku": "soap", "qty": 1}]}
            ),
            api.post(f"{D1}/settlements", json={"id": f"s{i}", "from": start, "to": to}),
        )
        assert back.status_code == 201, back.text
        assert settled.status_code == 201, settled.text
        start = to
    await asyncio.sleep(0.005)
    last = {"id": "final", "from": start, "to": datetime.now(UTC).isoformat()}
    assert (await api.post(f"{D1}/settlements", json=last)).status_code == 201
    rows = await pool.fetch("SELECT settlement_id FROM interchange_moves")
    assert rows and all(r["settlement_id"] is not None for r in rows)
    listed = (await api.get(f"{D1}/settlements")).json()["settlements"]
    assert sum(s["moves"] for s in listed) == len(rows)  # every move once, none twice
    net = sum(
        p["net_points"]
        for s in listed
        for p in s["positions"]
        if (p["from"], p["to"]) == ("green", "blue")
    )
    clearing = (await api.get(f"{D1}/clearing")).json()["positions"]
    assert net == next(p["net_points"] for p in clearing if p["from"] == "green") == 8 * 5
