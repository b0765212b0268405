"""Concurrent offsets: the household's yearly cap and redeemable hold under real overlap."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.helpers import OFFSETS, C, award, balance, community


def _offset(oid: str, member: str, points: int, hold: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "id": oid,
        "member": member,
        "household": "h0",
        "bill_amount_fen": 100_000,
        "points": points,
    }
    if hold:
        body["hold"] = True
    return body


async def _rules(api: httpx.AsyncClient, yearly_fen: int) -> None:
    doc = {"fen_per_point": 10, "offset": {"max_fen_per_household_per_year": yearly_fen}}
    r = await api.put(f"{C}/rules", json=doc)
    assert r.status_code in (200, 201), r.text


async def test_offsets_of_one_household_race_the_yearly_cap(api: httpx.AsyncClient) -> None:
    """30 offsets of 10 points (100 fen) by 3 members, cap 1000 fen: exactly 10 succeed."""
    await community(api, members=3, households=1)
    await _rules(api, 1000)
    for m in range(3):
        await award(api, f"a{m}", f"m{m}", 100)
    bodies = [_offset(f"b{i}", f"m{i % 3}", 10, hold=i % 2 == 0) for i in range(30)]
    responses = await asyncio.gather(*(api.post(OFFSETS, json=b) for b in bodies))
    assert Counter(r.status_code for r in responses) == {201: 10, 409: 20}
    caps = {r.json()["cap"] for r in responses if r.status_code == 409}
    assert caps == {"max_fen_per_household_per_year"}
    listed = (await api.get(OFFSETS)).json()["totals"]
    assert listed["applied_fen"] + listed["held_fen"] == 1000
    # Cancelling three frees 300 fen: three more fit, and not a fourth.
    ok = [b["id"] for b, r in zip(bodies, responses, strict=True) if r.status_code == 201]
    await asyncio.gather(*(api.post(f"{OFFSETS}/{oid}/cancel") for oid in ok[:3]))
    more = await asyncio.gather(
        *(api.post(OFFSETS, json=_offset(f"c{i}", "m0", 10)) for i in range(4))
    )
    assert Counter(r.status_code for r in more) == {201: 3, 409: 1}


async def test_offsets_race_redeemable_and_other_spends_without_deadlock(
    api: httpx.AsyncClient,
) -> None:
    """Offsets (household lock, then member) and plain spends of two members (member
    locks only) overlap: nobody overspends, nothing deadlocks."""
    await community(api, members=2, households=1)
    await _rules(api, 10**9)
    await award(api, "a0", "m0", 50)
    await award(api, "a1", "m1", 50)
    offsets = [api.post(OFFSETS, json=_offset(f"b{i}", f"m{i % 2}", 5)) for i in range(16)]
    spends = [
        api.post(
            f"{C}/transactions",
            json={
                "id": f"t{i}",
                "postings": [
                    {
                        "source": "member:m0:points",
                        "destination": "member:m1:points",
                        "asset": "points",
                        "amount": 3,
                    },
                    {
                        "source": "member:m1:points",
                        "destination": "store:s1:redemptions",
                        "asset": "points",
                        "amount": 4,
                    },
                ],
            },
        )
        for i in range(8)
    ]
    responses = await asyncio.gather(*offsets, *spends)
    assert {r.status_code for r in responses} <= {201, 409}
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "insufficient_points"
    for m in ("m0", "m1"):
        assert (await balance(api, m))["points"]["redeemable"] >= 0


async def test_concurrent_duplicates_of_one_offset_have_one_effect(api: httpx.AsyncClient) -> None:
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    responses = await asyncio.gather(
        *(api.post(OFFSETS, json=_offset("b1", "m0", 10)) for _ in range(8))
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 7}
    assert len({r.text for r in responses}) == 1
    assert (await balance(api, "m0"))["points"]["score"] == 190


async def test_apply_and_cancel_racing_end_consistent(api: httpx.AsyncClient) -> None:
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    for i in range(6):
        assert (
            await api.post(OFFSETS, json=_offset(f"b{i}", "m0", 10, hold=True))
        ).status_code == 201
    calls = [api.post(f"{OFFSETS}/b{i}/{verb}") for i in range(6) for verb in ("apply", "cancel")]
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} <= {200, 409}
    statuses = [(await api.get(f"{OFFSETS}/b{i}")).json()["status"] for i in range(6)]
    applied = statuses.count("applied")
    assert set(statuses) <= {"applied", "cancelled"}
    assert (await balance(api, "m0"))["points"] == {
        "score": 200 - 10 * applied,
        "held": 0,
        "baseline": 100,
        "redeemable": 100 - 10 * applied,
        "expiring": [],
    }


async def test_concurrent_duplicates_of_a_refused_offset_leave_nothing(
    api: httpx.AsyncClient,
) -> None:
    """A refusal deletes the offset row its statement inserted: duplicates that waited
    on that row then insert it themselves, and are refused the same way."""
    await community(api, members=2, households=1)
    await _rules(api, 1000)
    await award(api, "a0", "m0", 100)
    await award(api, "a1", "m1", 5)
    too_many = await asyncio.gather(
        *(api.post(OFFSETS, json=_offset("poor", "m1", 6)) for _ in range(8))
    )
    assert {r.status_code for r in too_many} == {409}
    assert {r.json()["code"] for r in too_many} == {"insufficient_points"}
    over_cap = await asyncio.gather(
        *(api.post(OFFSETS, json=_offset("big", "m0", 101)) for _ in range(8))
    )
    assert {r.json()["cap"] for r in over_cap} == {"max_fen_per_household_per_year"}
    for oid in ("poor", "big"):
        assert (await api.get(f"{OFFSETS}/{oid}")).status_code == 404
    assert (await balance(api, "m1"))["points"]["held"] == 0
    # The ids are free: a request that fits writes them.
    assert (await api.post(OFFSETS, json=_offset("poor", "m1", 5))).status_code == 201
    assert (await api.post(OFFSETS, json=_offset("big", "m0", 95))).status_code == 201


async def test_concurrent_applies_of_one_hold_apply_it_once(api: httpx.AsyncClient) -> None:
    """One apply posts the hold; the others find it applied and answer as replays."""
    await community(api, members=1)
    await award(api, "a0", "m0", 100)
    created = await api.post(OFFSETS, json=_offset("b1", "m0", 10, hold=True))
    assert created.status_code == 201
    responses = await asyncio.gather(*(api.post(f"{OFFSETS}/b1/apply") for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    replayed = Counter(r.headers.get("idempotent-replayed") for r in responses)
    assert replayed == {None: 1, "true": 7}
    assert len({r.json()["applied_at"] for r in responses}) == 1
    assert {r.json()["status"] for r in responses} == {"applied"}
    assert (await balance(api, "m0"))["points"] == {
        "score": 190,
        "held": 0,
        "baseline": 100,
        "redeemable": 90,
        "expiring": [],
    }
