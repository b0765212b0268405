"""Moving house under concurrency (SPEC section 16): a move racing spends of the same
member in its community never lets it spend what it carried. Each spend either
comes first (and the move carries less) or finds the member closed; and duplicates
of a move, or two moves of one member, have exactly one effect."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from tests.network_helpers import BLUE, D1, GREEN, account, basket, two_communities

MOVE = f"{GREEN}/members/m0/move"


def _move(ident: str = "mv1", to_member: str = "n0") -> dict[str, Any]:
    return {"id": ident, "to_community": "blue", "to_member": to_member, "household": "h0"}


async def _seed_minutes(api: httpx.AsyncClient, minutes: int) -> None:
    posting = {
        "source": "system:timebank:minutes",
        "destination": "member:m0:minutes",
        "asset": "minutes",
        "amount": minutes,
    }
    r = await api.post(f"{GREEN}/transactions", json={"id": "hours", "postings": [posting]})
    assert r.status_code == 201, r.text


async def test_a_move_racing_spends_of_its_member_never_overspends(
    api: httpx.AsyncClient,
) -> None:
    await two_communities(api, stock=100)  # type: ignore[arg-type]
    await _seed_minutes(api, 120)
    # m0 has 100 points above the baseline and 120 minutes, enough for every spend
    # (soap at 5 at both communities' tills, minutes given 10 at a time) but for the
    # move in the middle: what a spend meets is the move, never a shortage.
    spends = []
    for i in range(12):
        where = GREEN if i % 2 == 0 else BLUE
        sale = basket(f"r{i}", "m0", None if where == GREEN else "green", soap=1)
        spends.append(api.post(f"{where}/redemptions", json=sale))
        gift = {"id": f"t{i}", "from_member": "m0", "to_member": "m1", "minutes": 10}
        spends.append(api.post(f"{GREEN}/time-transfers", json=gift))
    moves = [api.post(MOVE, json=_move()) for _ in range(2)]  # a duplicate, too
    answers = await asyncio.gather(*spends[:12], *moves, *spends[12:])
    moved = answers[12:14]
    assert sorted(r.status_code for r in moved) == [200, 201], [r.text for r in moved]
    assert moved[0].json() == moved[1].json()
    carried = moved[0].json()["carried"]
    others = answers[:12] + answers[14:]
    codes = Counter((r.status_code, r.json().get("code")) for r in others)
    assert set(codes) <= {(201, None), (409, "member_closed")}, codes
    # What was spent before the move plus what it carried is what m0 had, exactly.
    sold = sum(1 for r in others if r.status_code == 201 and "store" in r.json()) * 5
    given = sum(1 for r in others if r.status_code == 201 and "store" not in r.json()) * 10
    assert sold + carried["points"] == 100, (sold, carried)
    assert given + carried["minutes"] == 120, (given, carried)
    shelves = await account(api, GREEN, "store:s1:redemptions")  # type: ignore[arg-type]
    shelves += await account(api, BLUE, "store:s1:redemptions")  # type: ignore[arg-type]
    assert shelves == sold
    m1 = (await api.get(f"{GREEN}/members/m1/balance")).json()
    assert m1["minutes"]["balance"] == given
    old = (await api.get(f"{GREEN}/members/m0/balance")).json()
    assert (old["points"]["score"], old["points"]["redeemable"], old["minutes"]["balance"]) == (
        100,
        0,
        0,
    )
    new = (await api.get(f"{BLUE}/members/n0/balance")).json()
    assert (new["points"]["redeemable"], new["minutes"]["balance"]) == (
        carried["points"],
        carried["minutes"],
    )
    # Whatever came after the move is refused as the member's having moved out.
    late = await api.post(f"{GREEN}/redemptions", json=basket("late", "m0", None, soap=1))
    assert (late.status_code, late.json()["code"]) == (409, "member_closed")
    assert (await api.get(f"{D1}/audit/verify")).json()["ok"] is True


async def test_two_moves_of_one_member_make_one(api: httpx.AsyncClient) -> None:
    await two_communities(api)  # type: ignore[arg-type]
    answers = await asyncio.gather(
        *(api.post(MOVE, json=_move(f"mv{i}", f"n{i}")) for i in range(4))
    )
    codes = Counter((r.status_code, r.json().get("code")) for r in answers)
    assert codes == {(201, None): 1, (409, "member_closed"): 3}, [r.text for r in answers]
    [made] = [r.json() for r in answers if r.status_code == 201]
    assert made["carried"]["points"] == 100
    for i in range(4):
        r = await api.get(f"{BLUE}/members/n{i}")
        assert r.status_code == (200 if made["member"]["id"] == f"n{i}" else 404)
    assert await account(api, GREEN, "interchange:blue:points") == 100  # type: ignore[arg-type]
    assert (await api.get(f"{D1}/audit/verify")).json()["ok"] is True
