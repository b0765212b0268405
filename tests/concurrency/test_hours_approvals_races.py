"""Approvals of volunteer hours racing (SPEC section 11): the hours are approved,
their `volunteer.approved` event recorded and its points awarded exactly once, by
the approval that completes them; a key racing itself counts once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests.api.test_organisers import TWO_APPROVALS
from tests.api.test_rules import SCHEME, YAML
from tests.api.test_volunteer_hours import log_body
from tests.helpers import C, balance, bearer, community

HOURS = f"{C}/volunteer-hours"


async def _key(api: httpx.AsyncClient, role: str) -> tuple[str, dict[str, str]]:
    r = await api.post("/v1/api-keys", json={"role": role, "community": "green"})
    assert r.status_code == 201, r.text
    return r.json()["id"], bearer(r.json()["key"])


async def _setup(api: httpx.AsyncClient, scheme: str) -> None:
    await community(api)
    r = await api.put(f"{C}/rules", content=scheme.encode(), headers=YAML)
    assert r.status_code == 201, r.text
    _, app = await _key(api, "volunteer_app")
    r = await api.post(HOURS, json=log_body(), headers=app)
    assert r.status_code == 201, r.text


async def _counted(dsn: str) -> tuple[int, int, int]:
    """Events recorded for vh1, their award transactions, and its approvals rows."""
    conn = await asyncpg.connect(dsn)
    try:
        events = await conn.fetchval("SELECT count(*) FROM events WHERE id = 'vh:vh1:approved'")
        awards = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE event_id = 'vh:vh1:approved'"
        )
        approvals = await conn.fetchval(
            "SELECT count(*) FROM hours_approvals WHERE hours_id = 'vh1'"
        )
    finally:
        await conn.close()
    return events, awards, approvals


def _fresh(responses: list[Any]) -> list[Any]:
    return [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]


async def test_distinct_keys_approving_at_once_approve_once(
    api: httpx.AsyncClient, dsn: str
) -> None:
    """Two approvals needed, six keys each approving twice at once: the hours are
    approved by exactly one of the calls, which alone carries the event."""
    await _setup(api, TWO_APPROVALS)
    keys = [await _key(api, "organiser" if i % 2 else "operator") for i in range(6)]
    calls = [api.post(f"{HOURS}/vh1/approve", headers=h) for _, h in keys for _ in range(2)]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    completing = [r for r in responses if r.json()["event"] is not None]
    assert len(completing) == 1
    done = completing[0].json()
    assert done["status"] == "approved" and len(done["approvals"]) == 2
    # The first approval and the completing one are the only calls that changed anything.
    assert len(_fresh(responses)) == 2
    hours = (await api.get(f"{HOURS}/vh1")).json()
    assert hours["status"] == "approved" and hours["approvals"] == done["approvals"]
    assert hours["decided_by"] == done["approvals"][1]["key_id"]
    assert await _counted(dsn) == (1, 1, 2)
    after = await balance(api, "m0")
    assert after["minutes"]["balance"] == 90 and after["points"]["score"] == 100 + 15


async def test_one_approval_needed_many_keys_at_once(api: httpx.AsyncClient, dsn: str) -> None:
    await _setup(api, SCHEME)
    keys = [await _key(api, "organiser") for _ in range(8)]
    responses = await asyncio.gather(
        *(api.post(f"{HOURS}/vh1/approve", headers=h) for _, h in keys)
    )
    assert all(r.status_code == 200 for r in responses)
    assert len(_fresh(responses)) == 1
    assert sum(r.json()["event"] is not None for r in responses) == 1
    assert await _counted(dsn) == (1, 1, 1)
    assert (await balance(api, "m0"))["points"]["score"] == 100 + 15


async def test_a_key_racing_itself_counts_once(api: httpx.AsyncClient, dsn: str) -> None:
    await _setup(api, TWO_APPROVALS)
    key_id, organiser = await _key(api, "organiser")
    responses = await asyncio.gather(
        *(api.post(f"{HOURS}/vh1/approve", headers=organiser) for _ in range(10))
    )
    assert all(r.status_code == 200 for r in responses)
    assert len(_fresh(responses)) == 1
    assert all(r.json()["status"] == "pending" for r in responses)
    hours = (await api.get(f"{HOURS}/vh1")).json()
    assert hours["status"] == "pending" and [a["key_id"] for a in hours["approvals"]] == [key_id]
    assert await _counted(dsn) == (0, 0, 1)
    assert (await balance(api, "m0"))["minutes"]["balance"] == 0


async def test_last_approval_and_a_rejection_racing_decide_once(
    api: httpx.AsyncClient, dsn: str
) -> None:
    await _setup(api, TWO_APPROVALS)
    _, first = await _key(api, "organiser")
    assert (await api.post(f"{HOURS}/vh1/approve", headers=first)).status_code == 200
    keys = [await _key(api, "organiser") for _ in range(6)]
    calls = [
        api.post(f"{HOURS}/vh1/{'approve' if i % 2 else 'reject'}", headers=h)
        for i, (_, h) in enumerate(keys)
    ]
    responses = await asyncio.gather(*calls)
    final = (await api.get(f"{HOURS}/vh1")).json()["status"]
    assert len(_fresh(responses)) == 1
    events, awards, _ = await _counted(dsn)
    minutes = (await balance(api, "m0"))["minutes"]["balance"]
    if final == "approved":
        assert (events, awards, minutes) == (1, 1, 90)
    else:
        assert final == "rejected" and (events, awards, minutes) == (0, 0, 0)
