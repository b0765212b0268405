"""Concurrent requests with one client id have exactly one effect (SPEC section 3)."""

from __future__ import annotations

from collections import Counter

import httpx

from tests.concurrency.common import post_all
from tests.helpers import STORE, C, award, balance, community, transfer


def replayed(r: httpx.Response) -> bool:
    return r.status_code == 200 and r.headers.get("idempotent-replayed") == "true"


async def test_twenty_identical_requests_make_one_transaction(api: httpx.AsyncClient) -> None:
    """20 identical POSTs at once: one 201, nineteen 200 replays with the same body; one effect."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    body = transfer("t1", "member:m0:points", STORE, 10, memo="soap", metadata={"till": 3})
    responses = await post_all(api, [body] * 20)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}
    created = next(r for r in responses if r.status_code == 201)
    assert "idempotent-replayed" not in created.headers
    assert all(replayed(r) for r in responses if r is not created)
    assert all(r.json() == created.json() for r in responses)
    assert (await balance(api, "m0"))["points"]["score"] == 140
    statement = (await api.get(f"{C}/members/m0/statement")).json()["entries"]
    assert [e["transaction_id"] for e in statement] == ["t1", "a1", "m0:opening"]


async def test_identical_pending_requests_hold_once(api: httpx.AsyncClient) -> None:
    """20 identical pending POSTs at once reserve the amount once, and all return the hold."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    body = transfer("h1", "member:m0:points", "property:acme:offsets", 30, pending={"ttl_s": 60})
    responses = await post_all(api, [body] * 20)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["status"] == "pending"
    assert (await balance(api, "m0"))["points"]["held"] == 30


async def test_same_id_different_bodies_one_wins(api: httpx.AsyncClient) -> None:
    """Same id, ten different bodies (each sent twice) at once: one wins; its twin replays it;
    every other request is 409 idempotency_conflict; only the winner's amount moves."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    bodies = [transfer("t1", "member:m0:points", STORE, 1 + i % 10) for i in range(20)]
    responses = await post_all(api, bodies)
    winners = [r for r in responses if r.status_code == 201]
    assert len(winners) == 1
    won = winners[0].json()["postings"][0]["amount"]
    for body, r in zip(bodies, responses, strict=True):
        if r is winners[0]:
            continue
        if body["postings"][0]["amount"] == won:
            assert replayed(r) and r.json() == winners[0].json()
        else:
            assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict", r.text
    assert (await balance(api, "m0"))["points"]["score"] == 150 - won
    assert (await api.get(f"{C}/transactions/t1")).json()["postings"][0]["amount"] == won


async def test_refused_request_leaves_its_id_free(api: httpx.AsyncClient) -> None:
    """Identical over-spends at once are all refused (none replays a failure as a success);
    the id is then free for a request that fits."""
    await community(api, members=1)
    await award(api, "a1", "m0", 5)
    too_much = transfer("t1", "member:m0:points", STORE, 6)
    responses = await post_all(api, [too_much] * 10)
    assert {(r.status_code, r.json()["code"]) for r in responses} == {(409, "insufficient_points")}
    fits = transfer("t1", "member:m0:points", STORE, 5)
    assert (await api.post(f"{C}/transactions", json=fits)).status_code == 201
    assert (await balance(api, "m0"))["points"]["score"] == 100
