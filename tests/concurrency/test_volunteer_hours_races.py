"""Approve and reject racing on the same hours: one decision, taken once."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from tests.api.test_volunteer_hours import log_body
from tests.helpers import C, balance, bearer, community


async def test_approve_and_reject_racing_decide_once(api: httpx.AsyncClient) -> None:
    """Logged by a volunteer app, decided by the admin key (not the logging key)."""
    await community(api)
    r = await api.post("/v1/api-keys", json={"role": "volunteer_app", "community": "green"})
    app = bearer(r.json()["key"])
    r = await api.post(f"{C}/volunteer-hours", json=log_body(), headers=app)
    assert r.status_code == 201, r.text
    calls = [
        api.post(f"{C}/volunteer-hours/vh1/{'approve' if i % 2 else 'reject'}") for i in range(20)
    ]
    responses = await asyncio.gather(*calls)
    final = (await api.get(f"{C}/volunteer-hours/vh1")).json()["status"]
    winner = "approve" if final == "approved" else "reject"
    by_kind = Counter((str(r.request.url).rsplit("/", 1)[1], r.status_code) for r in responses)
    assert by_kind[(winner, 200)] == 10, by_kind  # the decision, then its replays
    loser = "reject" if winner == "approve" else "approve"
    assert by_kind[(loser, 409)] == 10, by_kind
    fresh = [
        r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers
    ]
    assert len(fresh) == 1
    minutes = (await balance(api, "m0"))["minutes"]["balance"]
    assert minutes == (90 if final == "approved" else 0)
