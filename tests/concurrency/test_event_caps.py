"""Events racing one member's cap: the cap holds exactly, whatever the interleaving."""

from __future__ import annotations

import asyncio

import httpx

from tests.api.test_rules import YAML, event, publish
from tests.helpers import C, balance, community


async def test_events_racing_one_cap_post_exactly_the_cap(api: httpx.AsyncClient) -> None:
    """25 concurrent 10-point awards against a 100-point monthly cap: exactly 100 posted."""
    await community(api)  # type: ignore[arg-type]
    await publish(api)  # type: ignore[arg-type]
    events = [event(f"e{i}", "volunteer.approved", minutes=60) for i in range(25)]
    responses = await asyncio.gather(*(api.post(f"{C}/events", json=e) for e in events))
    assert {r.status_code for r in responses} == {201}
    applied = [r.json()["decisions"][0]["applied"] for r in responses]
    assert sorted(applied, reverse=True)[:10] == [10] * 10 and sum(applied) == 100
    skipped = [r.json()["decisions"][0]["skipped"] for r in responses]
    assert skipped.count("cap_reached") == 15
    assert (await balance(api, "m0"))["points"]["score"] == 200  # type: ignore[arg-type]


async def test_duplicate_events_racing_post_once(api: httpx.AsyncClient) -> None:
    await community(api)  # type: ignore[arg-type]
    await publish(api)  # type: ignore[arg-type]
    body = event("same", "volunteer.approved", minutes=120)
    responses = await asyncio.gather(*(api.post(f"{C}/events", json=body) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert all(r.json() == responses[0].json() for r in responses)
    assert (await balance(api, "m0"))["points"]["score"] == 120  # type: ignore[arg-type]


async def test_deductions_racing_the_floor(api: httpx.AsyncClient) -> None:
    """20 concurrent 10-point deductions of a 100-point member: the score stops at 0."""
    await community(api)  # type: ignore[arg-type]
    r = await api.put(f"{C}/rules", content=b"rules:\n  - id: d\n    on: bad\n    deduct: 10\n"
                      b"    reason: r\n", headers=YAML)  # fmt: skip
    assert r.status_code == 201
    responses = await asyncio.gather(*(api.post(f"{C}/events", json=event(f"d{i}", "bad"))
                                       for i in range(20)))  # fmt: skip
    applied = sorted(r.json()["decisions"][0]["applied"] for r in responses)
    assert applied == [0] * 10 + [10] * 10
    assert (await balance(api, "m0"))["points"]["score"] == 0  # type: ignore[arg-type]
