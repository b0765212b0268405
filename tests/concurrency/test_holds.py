"""Pending holds under concurrency: one outcome per hold, and holds count against redeemable."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from service.ledger.service import expire_due
from tests.concurrency.common import post_all
from tests.helpers import ACME_OFFSETS, STORE, C, award, balance, community, transfer


def hold(tx_id: str, amount: int, member: str = "m0") -> dict[str, Any]:
    return transfer(tx_id, f"member:{member}:points", ACME_OFFSETS, amount, pending={"ttl_s": 60})


async def finish(api: httpx.AsyncClient, tx_id: str, action: str, **body: Any) -> httpx.Response:
    return await api.post(f"{C}/transactions/{tx_id}/{action}", json=body or None)


async def status_of(api: httpx.AsyncClient, tx_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.get(f"{C}/transactions/{tx_id}")).json()
    return result


def check_race(outcome: str, results: list[tuple[str, httpx.Response]]) -> None:
    """The winning action's first response is a plain 200, its repeats are replays, and
    every request for the other action is 409 invalid_state."""
    action = "post" if outcome == "posted" else "void"
    same = [r for a, r in results if a == action]
    other = [r for a, r in results if a != action]
    assert all(r.status_code == 200 for r in same), [r.text for r in same]
    assert sorted(r.headers.get("idempotent-replayed") == "true" for r in same) == [False, True]
    assert all(r.status_code == 409 and r.json()["code"] == "invalid_state" for r in other)


async def test_post_and_void_race_has_one_winner_per_hold(api: httpx.AsyncClient) -> None:
    """Two posts and two voids fired at once on each of 10 holds: exactly one action wins."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    ids = [f"h{i}" for i in range(10)]
    assert {r.status_code for r in await post_all(api, [hold(i, 4) for i in ids])} == {201}
    actions = [(tx_id, a) for tx_id in ids for a in ("post", "void", "void", "post")]
    responses = await asyncio.gather(*(finish(api, tx_id, a) for tx_id, a in actions))
    posted = 0
    for tx_id in ids:
        outcome = (await status_of(api, tx_id))["status"]
        results = [(a, r) for (t, a), r in zip(actions, responses, strict=True) if t == tx_id]
        check_race(outcome, results)
        posted += outcome == "posted"
    assert (await balance(api, "m0"))["points"] == {
        "score": 150 - 4 * posted,
        "held": 0,
        "baseline": 100,
        "redeemable": 50 - 4 * posted,
        "expiring": [],
    }
    assert (await api.get(f"{C}/accounts/{ACME_OFFSETS}")).json()["posted"] == 4 * posted


async def test_partial_posts_of_different_amounts_post_once(api: httpx.AsyncClient) -> None:
    """Posting one hold for 10, 20 and 30 at once: one amount is posted, the others are 409."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    assert (await api.post(f"{C}/transactions", json=hold("h1", 30))).status_code == 201
    amounts = [10, 20, 30] * 3
    responses = await asyncio.gather(*(finish(api, "h1", "post", amount=a) for a in amounts))
    posted = (await status_of(api, "h1"))["postings"][0]["amount"]
    for amount, r in zip(amounts, responses, strict=True):
        expected = 200 if amount == posted else 409
        assert r.status_code == expected, (amount, posted, r.text)
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 2
    assert (await balance(api, "m0"))["points"]["score"] == 150 - posted


async def test_holds_and_spends_together_never_exceed_redeemable(api: httpx.AsyncClient) -> None:
    """20 holds and 20 spends of 5 racing for 50 redeemable points: exactly 10 get through;
    then posting the holds while more spends race takes nothing the holds reserved."""
    await community(api, members=1)
    await award(api, "a1", "m0", 50)
    bodies = [
        hold(f"h{i}", 5) if i % 2 else transfer(f"s{i}", "member:m0:points", STORE, 5)
        for i in range(40)
    ]
    responses = await post_all(api, bodies)
    assert Counter(r.status_code for r in responses) == {201: 10, 409: 30}
    held = [
        b["id"]
        for b, r in zip(bodies, responses, strict=True)
        if r.status_code == 201 and "pending" in b
    ]
    points = (await balance(api, "m0"))["points"]
    assert points == {
        "score": 150 - 5 * (10 - len(held)),
        "held": 5 * len(held),
        "baseline": 100,
        "redeemable": 0,
        "expiring": [],
    }
    more = [transfer(f"late{i}", "member:m0:points", STORE, 1) for i in range(10)]
    posts = asyncio.gather(*(finish(api, tx_id, "post") for tx_id in held))
    spends = post_all(api, more)
    posted, refused = await asyncio.gather(posts, spends)
    assert all(r.status_code == 200 for r in posted), [r.text for r in posted]
    assert {r.status_code for r in refused} == {409}
    assert (await balance(api, "m0"))["points"] == {
        "score": 100,
        "held": 0,
        "baseline": 100,
        "redeemable": 0,
        "expiring": [],
    }


async def first_expiry(pool: asyncpg.Pool, job: asyncio.Task[int]) -> None:
    """Returns once the expiry job has voided its first hold, so the race starts mid-run."""
    query = "SELECT count(*) FROM transactions WHERE void_reason = 'expired'"
    async with pool.acquire() as conn:
        for _ in range(5000):
            if job.done() or await conn.fetchval(query):
                return
            await asyncio.sleep(0.001)


async def test_posting_races_the_expiry_job(api: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """The owner posts 20 holds while the expiry job (clock past their ttl) voids them:
    each hold ends either posted or voided as expired, and the points add up."""
    await community(api, members=1)
    await award(api, "a1", "m0", 100)
    ids = [f"h{i}" for i in range(20)]
    assert {r.status_code for r in await post_all(api, [hold(i, 2) for i in ids])} == {201}
    later = datetime.now(UTC) + timedelta(seconds=120)
    job = asyncio.create_task(expire_due(pool, now=later))
    await first_expiry(pool, job)
    # The job voids in expiry order, h0 first; the owner posts from the other end.
    responses = await asyncio.gather(*(finish(api, tx_id, "post") for tx_id in reversed(ids)))
    responses.reverse()
    expired = await job
    txs = await asyncio.gather(*(status_of(api, tx_id) for tx_id in ids))
    for r, tx in zip(responses, txs, strict=True):
        if r.status_code == 200:
            assert tx["status"] == "posted"
        else:
            assert r.json()["code"] == "invalid_state", r.text
            assert (tx["status"], tx["void_reason"]) == ("voided", "expired")
    posted = sum(tx["status"] == "posted" for tx in txs)
    assert posted + expired == 20
    assert (await balance(api, "m0"))["points"] == {
        "score": 200 - 2 * posted,
        "held": 0,
        "baseline": 100,
        "redeemable": 100 - 2 * posted,
        "expiring": [],
    }
