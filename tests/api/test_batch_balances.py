"""transactions:batch gives the same answers, balances, running balances and seals
as item by item (tests/integration/test_batch_matches_single_writes.py compares the
two row for row)."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.ledger.service import seal_all
from tests.helpers import (
    BATCH,
    ISSUANCE,
    STORE,
    C,
    Client,
    award,
    balance,
    community,
    transfer,
)


async def post_batch(client: Client, items: list[dict[str, Any]], **extra: Any) -> Any:
    r = await client.post(BATCH, json={"transactions": items, **extra})
    assert r.status_code == 200, r.text
    return r.json()["results"]


async def entries(client: Client, address: str) -> list[dict[str, Any]]:
    """Every entry of an account, oldest first."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"{C}/accounts/{address}/entries", params=params)
        assert r.status_code == 200, r.text
        found += r.json()["entries"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return found[::-1]


async def assert_running_balances(client: Client, member: str) -> int:
    """Each entry's balance is the one before it plus its amount; returns the last."""
    rows = await entries(client, f"member:{member}:points")
    running = 0
    for row in rows:
        running += row["amount"]
        assert row["balance_after"] == running, (member, row)
    return running


async def test_a_large_batch_that_all_succeeds(client: Client, pool: asyncpg.Pool) -> None:
    await community(client, members=10)
    items = [transfer(f"t{i}", ISSUANCE, f"member:m{i % 10}:points", 1 + i % 7) for i in range(300)]
    items += [transfer(f"s{m}", f"member:m{m}:points", STORE, 20 + m) for m in range(10)]
    items += [
        transfer(f"x{m}", f"member:m{m}:points", f"member:m{9 - m}:points", 3) for m in range(10)
    ]
    results = await post_batch(client, items)
    assert [x["status"] for x in results] == [201] * len(items)
    assert [x["transaction"]["id"] for x in results] == [item["id"] for item in items]
    assert results[5]["transaction"]["postings"] == items[5]["postings"]
    for m in range(10):
        credited = sum(1 + i % 7 for i in range(300) if i % 10 == m)
        score = 100 + credited - (20 + m)
        assert (await balance(client, f"m{m}"))["points"]["score"] == score
        assert await assert_running_balances(client, f"m{m}") == score
    assert await seal_all(pool) >= len(items)
    report = (await client.get(f"{C}/audit/verify")).json()
    assert report["ok"], report["problems"]


async def test_results_keep_item_order_and_replay_as_a_whole(client: Client) -> None:
    await community(client, members=3)
    items = [
        transfer(f"t{i}", ISSUANCE, f"member:m{i % 3}:points", 2, memo=f"n{i}", metadata={"i": i})
        for i in range(50)
    ]
    first = await post_batch(client, items)
    again = await post_batch(client, items)
    assert [x["status"] for x in again] == [200] * 50
    assert [x["transaction"] for x in again] == [x["transaction"] for x in first]
    assert (await balance(client, "m0"))["points"]["score"] == 100 + 2 * 17


async def test_an_overspend_midway_is_refused_alone(client: Client) -> None:
    await community(client, members=2)
    items = [transfer(f"t{i}", ISSUANCE, "member:m0:points", 5) for i in range(4)]
    items.append(transfer("big", "member:m0:points", STORE, 21))  # 20 redeemable
    items += [transfer(f"u{i}", ISSUANCE, "member:m0:points", 5) for i in range(2)]
    items.append(transfer("fits", "member:m0:points", STORE, 21))  # 30 redeemable now
    results = await post_batch(client, items)
    assert [x["status"] for x in results] == [201] * 4 + [409] + [201] * 3
    problem = results[4]["problem"]
    assert problem["code"] == "insufficient_points" and problem["available"] == 20
    assert (await balance(client, "m0"))["points"]["score"] == 100 + 30 - 21
    assert await assert_running_balances(client, "m0") == 109


async def test_replays_and_duplicates_within_a_batch(client: Client) -> None:
    await community(client, members=2)
    await award(client, "a1", "m1", 10)
    items = [transfer(f"t{i}", ISSUANCE, "member:m0:points", 1) for i in range(5)]
    items.append(transfer("a1", ISSUANCE, "member:m1:points", 10))  # replay of an earlier write
    items.append(items[2])  # replay of an item of this batch
    items.append(transfer("t3", ISSUANCE, "member:m0:points", 9))  # conflict with one
    results = await post_batch(client, items)
    assert [x["status"] for x in results] == [201] * 5 + [200, 200, 409]
    assert results[6]["transaction"] == results[2]["transaction"]
    assert results[7]["problem"]["code"] == "idempotency_conflict"
    assert (await balance(client, "m0"))["points"]["score"] == 105
    assert (await balance(client, "m1"))["points"]["score"] == 110


async def test_pending_items_of_a_batch_hold_and_can_be_posted(client: Client) -> None:
    await community(client, members=2)
    items = [transfer(f"t{i}", ISSUANCE, "member:m0:points", 10) for i in range(3)]
    items += [
        transfer(f"h{i}", "member:m0:points", "property:acme:offsets", 5, pending={"ttl_s": 600})
        for i in range(4)
    ]
    items.append(transfer("spend", "member:m0:points", STORE, 11))  # 30 - 20 held < 11
    results = await post_batch(client, items)
    assert [x["status"] for x in results] == [201] * 7 + [409]
    assert {x["transaction"]["status"] for x in results[3:7]} == {"pending"}
    assert results[3]["transaction"]["expires_at"] is not None
    assert (await balance(client, "m0"))["points"] == {
        "score": 130,
        "held": 20,
        "baseline": 100,
        "redeemable": 10,
        "expiring": [],
    }
    assert (await entries(client, "property:acme:offsets")) == []
    assert (await client.post(f"{C}/transactions/h0/post")).status_code == 200
    assert (await client.post(f"{C}/transactions/h1/void")).status_code == 200
    assert (await balance(client, "m0"))["points"]["held"] == 10
    assert await assert_running_balances(client, "m0") == 125


async def test_atomic_batches_all_or_nothing(client: Client) -> None:
    await community(client, members=3)
    good = [transfer(f"t{i}", ISSUANCE, f"member:m{i % 3}:points", 4) for i in range(30)]
    spends = [transfer(f"s{m}", f"member:m{m}:points", STORE, 40) for m in range(3)]
    results = await post_batch(client, good + spends, atomic=True)
    assert [x["status"] for x in results] == [201] * 33
    more = [transfer(f"u{i}", ISSUANCE, f"member:m{i % 3}:points", 1) for i in range(10)]
    more.append(transfer("over", "member:m1:points", STORE, 5))  # 0 + 3 redeemable
    r = await client.post(BATCH, json={"transactions": more, "atomic": True})
    assert r.status_code == 409 and r.json()["index"] == 10, r.text
    assert (await client.get(f"{C}/transactions/u0")).status_code == 404
    for m in range(3):
        assert (await balance(client, f"m{m}"))["points"]["score"] == 100
        assert await assert_running_balances(client, f"m{m}") == 100
    results = await post_batch(client, [*good[:3], *more[:10]], atomic=True)
    assert [x["status"] for x in results] == [200] * 3 + [201] * 10
