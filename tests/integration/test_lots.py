"""Lots through the write engine (SPEC section 9): what every undo gives back, what a
credit's reversal takes, and expiry that no spend-and-return can dodge.

Each test writes through the API (and the scheduler's `run_all`), reads the lots back
through `GET …/members/{m}/lots`, and ends with the audit, which checks for every
member that the open lots sum to the balance, that consumption sums to each debit,
and that each undo gave back exactly what its original took.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from service.rules.book import RuleBook
from service.rules.jobs import run_all
from tests.api.test_rules import YAML, event
from tests.api.test_supermarket import redemption, shelf
from tests.helpers import ISSUANCE, STORE, C, Client, balance, community, transfer

RULES = """\
baseline: 100
expiry:
  points: year_end_plus_one
rules:
  - id: help
    on: helped
    award: event.points
    reason: 帮助邻居
"""
EXPIRED = "system:expired:points"
END_2026 = datetime.fromisoformat("2027-01-01T00:00:00+08:00")  # 2025's lots expire
END_2027 = datetime.fromisoformat("2028-01-01T00:00:00+08:00")  # 2026's lots expire


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def publish(client: Client, text: str = RULES) -> None:
    params = {"effective_from": "2025-01-01T00:00:00+08:00"}
    r = await client.put(f"{C}/rules", params=params, content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text


async def helped(client: Client, ident: str, occurred_at: str, points: int) -> None:
    r = await client.post(f"{C}/events", json=event(ident, "helped", at=occurred_at, points=points))
    assert r.status_code == 201, r.text


async def lots(
    client: Client, member: str = "m0", asset: str = "points", status: str = "all"
) -> dict[str, tuple[int, int, datetime | None]]:
    """transaction_id → (amount, remaining, expires_at) of every lot of the account."""
    r = await client.get(
        f"{C}/members/{member}/lots", params={"asset": asset, "status": status, "limit": 500}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    return {
        lot["transaction_id"]: (
            lot["amount"],
            lot["remaining"],
            None if lot["expires_at"] is None else at(lot["expires_at"]),
        )
        for lot in body["lots"]
    }


async def post(client: Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await client.post(f"{C}{path}", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def posted(client: Client, address: str) -> int:
    r = await client.get(f"{C}/accounts/{address}")
    assert r.status_code == 200, r.text
    value: int = r.json()["posted"]
    return value


async def audit_passes(client: Client) -> None:
    r = await client.get(f"{C}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text


async def expire(pool: asyncpg.Pool, now: datetime) -> int:
    return await run_all(pool, RuleBook(), now)


# The loophole of issue 14: spend before the instant, give back after it.


async def test_points_spent_before_their_instant_and_returned_after_it_still_expire(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 100)
    await shelf(client, soap=(50, 10))
    await post(client, "/redemptions", redemption("r1", ("soap", 2)))
    assert (await lots(client))["event:e1:help"] == (100, 0, END_2026)

    # The instant passes while the points are at the shop: nothing of the lot is left.
    assert await expire(pool, END_2026 + timedelta(seconds=1)) == 0
    assert await posted(client, EXPIRED) == 0

    # The goods come back: the lot comes back with its own expiry, already past ...
    returned = await post(client, "/redemptions/r1/return")
    assert returned["points"] == 100
    assert (await lots(client))["event:e1:help"] == (100, 100, END_2026)
    assert (await balance(client, "m0"))["points"]["score"] == 200

    # ... so the next run expires it: once, whatever the number of runs.
    later = END_2026 + timedelta(minutes=5)
    assert await expire(pool, later) == 1
    assert await expire(pool, later) == 0
    assert (await balance(client, "m0"))["points"]["score"] == 100
    assert await posted(client, EXPIRED) == 100
    entries = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    assert (entries[0]["kind"], entries[0]["amount"], entries[0]["reason"]) == (
        "expiry",
        -100,
        "积分过期",
    )
    assert entries[0]["transaction_id"] == "expiry:points:20261231T160000Z:m0"
    await audit_passes(client)


async def test_what_comes_back_after_an_expiry_expires_in_a_second_round(
    client: Client, pool: asyncpg.Pool
) -> None:
    """60 of the 100 are at the shop when the lot's instant comes: 40 expire then;
    the 60 given back later expire at the next run, as a second expiry of that instant."""
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 100)
    await shelf(client, soap=(30, 10))
    await post(client, "/redemptions", redemption("r1", ("soap", 2)))
    assert await expire(pool, END_2026) == 1
    assert await posted(client, EXPIRED) == 40
    await post(
        client, "/redemptions/r1/return", {"id": "back", "items": [{"sku": "soap", "qty": 1}]}
    )
    assert await expire(pool, END_2026 + timedelta(hours=1)) == 1
    await post(client, "/redemptions/r1/return")
    assert await expire(pool, END_2026 + timedelta(hours=2)) == 1
    assert await expire(pool, END_2026 + timedelta(hours=3)) == 0
    assert await posted(client, EXPIRED) == 100
    assert (await balance(client, "m0"))["points"]["score"] == 100
    entries = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    key = "expiry:points:20261231T160000Z:m0"
    assert [e["transaction_id"] for e in entries if e["kind"] == "expiry"] == [
        f"{key}:3",
        f"{key}:2",
        key,
    ]
    await audit_passes(client)


async def test_each_member_counts_its_own_expiry_rounds(client: Client, pool: asyncpg.Pool) -> None:
    """Members `m1` and `m1_0` (whose id `m1` begins, and whose `_` a LIKE pattern
    would read as any character) keep apart the expiries of one instant."""
    await community(client, members=0)
    for ident in ("m1", "m1_0", "m1x0"):
        r = await client.post(f"{C}/members", json={"id": ident, "household": "h0"})
        assert r.status_code == 201, r.text
    await publish(client)
    for ident in ("m1", "m1_0", "m1x0"):
        r = await client.post(
            f"{C}/events", json=event(f"e-{ident}", "helped", member=ident,
                                      at="2025-06-01T10:00:00+08:00", points=10)
        )  # fmt: skip
        assert r.status_code == 201, r.text
    assert await expire(pool, END_2026) == 3
    ids = []
    for m in ("m1", "m1_0", "m1x0"):
        entries = (await client.get(f"{C}/members/{m}/statement")).json()["entries"]
        ids += [e["transaction_id"] for e in entries if e["kind"] == "expiry"]
    assert ids == [f"expiry:points:20261231T160000Z:{m}" for m in ("m1", "m1_0", "m1x0")]
    await audit_passes(client)


# Policies: per rule set, per rule, and per operator transaction.


async def test_months_policy_and_a_rules_own_expires(client: Client, pool: asyncpg.Pool) -> None:
    """`{months: 3}`: earned in January (Shanghai), a lot expires as May begins there;
    a rule with `expires: never` makes lots that never do."""
    await community(client, members=1)
    await publish(
        client,
        """\
baseline: 100
expiry:
  points: {months: 3}
rules:
  - id: help
    on: helped
    award: event.points
    reason: 帮助邻居
  - id: hero
    on: rescued
    award: 50
    reason: 见义勇为
    expires: never
""",
    )
    await helped(client, "e1", "2026-01-31T23:30:00+08:00", 20)
    r = await client.post(
        f"{C}/events", json=event("e2", "rescued", at="2026-01-15T09:00:00+08:00")
    )
    assert r.status_code == 201, r.text
    got = await lots(client)
    assert got["event:e1:help"] == (20, 20, at("2026-05-01T00:00:00+08:00"))
    assert got["event:e2:hero"] == (50, 50, None)
    assert await expire(pool, at("2026-05-01T00:00:00+08:00")) == 1
    assert (await balance(client, "m0"))["points"]["score"] == 150
    await audit_passes(client)


async def test_an_imported_lot_keeps_its_dates_and_a_past_expiry_expires_at_the_next_run(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client, members=1)
    await publish(client)
    paper = {"earned_at": "2023-03-01T09:00:00+08:00", "expires_at": "2024-01-01T00:00:00+08:00"}
    await post(client, "/transactions", transfer("import-1", ISSUANCE, "member:m0:points", 30,
                                                 lot=paper))  # fmt: skip
    r = await client.get(f"{C}/members/m0/lots")
    imported = next(x for x in r.json()["lots"] if x["transaction_id"] == "import-1")
    assert (at(imported["earned_at"]), at(imported["expires_at"])) == (
        at(paper["earned_at"]),
        at(paper["expires_at"]),
    )
    # Only the date it was earned: the rule set's policy gives the expiry.
    earned = {"earned_at": "2025-03-01T09:00:00+08:00"}
    await post(client, "/transactions", transfer("import-2", ISSUANCE, "member:m0:points", 5,
                                                 lot=earned))  # fmt: skip
    assert (await lots(client))["import-2"] == (5, 5, END_2026)
    assert await expire(pool, datetime.now(UTC)) == 1
    assert await posted(client, EXPIRED) == 30
    await audit_passes(client)


@pytest.mark.parametrize(
    "lot",
    [
        {"earned_at": "2025-03-01T09:00:00"},  # no time zone
        {"earned_at": "2999-01-01T00:00:00+08:00"},  # not yet earned
        {"earned_at": "2025-03-01T09:00:00+08:00", "expires_at": "2025-03-01T09:00:00+08:00"},
        {"expires_at": "soon"},
        {"colour": "red"},
    ],
)
async def test_a_bad_lot_is_422_and_changes_nothing(client: Client, lot: dict[str, Any]) -> None:
    await community(client, members=1)
    r = await client.post(
        f"{C}/transactions", json=transfer("bad", ISSUANCE, "member:m0:points", 5, lot=lot)
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert (await balance(client, "m0"))["points"]["score"] == 100
    assert (await client.get(f"{C}/transactions/bad")).status_code == 404
    await audit_passes(client)


# Undo: exactly what was consumed comes back.


async def test_reversing_a_spend_gives_back_exactly_the_lots_it_took(client: Client) -> None:
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 30)
    await helped(client, "e2", "2026-06-01T10:00:00+08:00", 20)
    await post(client, "/transactions", transfer("s1", "member:m0:points", STORE, 40))
    await helped(client, "e3", "2025-09-01T10:00:00+08:00", 15)  # sooner than e2, after s1
    await post(client, "/transactions/s1/reverse")
    got = await lots(client)
    assert got["event:e1:help"] == (30, 30, END_2026)
    assert got["event:e2:help"] == (20, 20, END_2027)
    assert got["event:e3:help"] == (15, 15, END_2026)
    assert got["m0:opening"] == (100, 100, None)
    await audit_passes(client)


async def test_reversing_a_credit_takes_its_own_lot_first(client: Client) -> None:
    """a2 expires later than a1, yet its reversal takes a2's lot, not the soonest;
    what a spend already took of a2 comes from the other lots in the fixed order."""
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 30)
    await helped(client, "e2", "2026-06-01T10:00:00+08:00", 50)
    await post(client, "/transactions/event:e2:help/reverse")
    got = await lots(client)
    assert got["event:e2:help"] == (50, 0, END_2027)
    assert got["event:e1:help"] == (30, 30, END_2026)

    await helped(client, "e3", "2026-07-01T10:00:00+08:00", 40)
    await post(client, "/transactions", transfer("s1", "member:m0:points", STORE, 50))
    assert (await lots(client))["event:e3:help"] == (40, 20, END_2027)  # e1's 30, then 20
    await post(client, "/transactions/event:e3:help/reverse")
    got = await lots(client)
    assert got["event:e3:help"] == (40, 0, END_2027)
    assert got["m0:opening"] == (100, 80, None)  # the 20 spent of e3 came from here
    assert (await balance(client, "m0"))["points"]["score"] == 80
    # Undoing the spend gives back what it took: e1's 30 and e3's 20, nothing else.
    await post(client, "/transactions/s1/reverse")
    got = await lots(client)
    assert (got["event:e1:help"], got["event:e3:help"]) == ((30, 30, END_2026), (40, 20, END_2027))
    assert (await balance(client, "m0"))["points"]["score"] == 130
    await audit_passes(client)


async def test_a_hold_keeps_its_lots_until_it_posts_or_voids(client: Client) -> None:
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 30)
    await helped(client, "e2", "2026-06-01T10:00:00+08:00", 20)
    hold = transfer("h1", "member:m0:points", STORE, 40, pending={"ttl_s": 600})
    await post(client, "/transactions", hold)
    shown = (await balance(client, "m0"))["points"]["expiring"]
    assert [(at(e["expires_at"]), e["amount"]) for e in shown] == [(END_2027, 10)]
    r = await client.post(f"{C}/transactions/h1/post", json={"amount": 35})
    assert r.status_code == 200, r.text
    got = await lots(client)
    assert (got["event:e1:help"], got["event:e2:help"]) == ((30, 0, END_2026), (20, 15, END_2027))

    await post(client, "/transactions", transfer("h2", "member:m0:points", STORE, 10,
                                                 pending={"ttl_s": 600}))  # fmt: skip
    r = await client.post(f"{C}/transactions/h2/void")
    assert r.status_code == 200, r.text
    assert (await lots(client))["event:e2:help"] == (20, 15, END_2027)
    shown = (await balance(client, "m0"))["points"]["expiring"]
    assert [(at(e["expires_at"]), e["amount"]) for e in shown] == [(END_2027, 15)]
    await audit_passes(client)


async def test_a_held_lot_that_reaches_its_instant_is_not_expired_under_the_hold(
    client: Client, pool: asyncpg.Pool
) -> None:
    """What a pending debit holds is spent when it posts; the rest of the lot expires."""
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 30)
    await post(client, "/transactions", transfer("h1", "member:m0:points", STORE, 10,
                                                 pending={"ttl_s": 3600}))  # fmt: skip
    # The scheduler's clock is the lot's instant; the hold's own clock is real time.
    assert await expire(pool, END_2026) == 1
    assert await posted(client, EXPIRED) == 20
    r = await client.post(f"{C}/transactions/h1/post")
    assert r.status_code == 200, r.text
    assert (await lots(client))["event:e1:help"] == (30, 0, END_2026)
    assert (await balance(client, "m0"))["points"]["score"] == 100
    await audit_passes(client)


async def test_a_time_transfer_reversed_gives_the_minutes_lots_back(client: Client) -> None:
    await community(client, members=2)
    paper = {"earned_at": "2025-03-01T09:00:00+08:00", "expires_at": "2030-01-01T00:00:00+08:00"}
    for ident, lot in (("t-old", paper), ("t-new", None)):
        body = transfer(ident, "system:timebank:minutes", "member:m0:minutes", 60, "minutes")
        if lot:
            body["lot"] = lot
        await post(client, "/transactions", body)
    gift = {"id": "g1", "from_member": "m0", "to_member": "m1", "minutes": 90}
    await post(client, "/time-transfers", gift)
    got = await lots(client, asset="minutes")
    assert got["t-old"][1] == 0 and got["t-new"][1] == 30
    received = await lots(client, member="m1", asset="minutes")
    assert list(received.values()) == [(90, 90, None)]
    await post(client, "/transactions/g1/reverse")
    got = await lots(client, asset="minutes")
    assert (got["t-old"][1], got["t-new"][1]) == (60, 60)
    assert [lot[1] for lot in (await lots(client, member="m1", asset="minutes")).values()] == [0]
    await audit_passes(client)


# Races: expiry, spends, returns and reversals of one member at once.


async def test_expiry_spends_returns_and_reversals_racing_on_one_member_stay_exact(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client, members=1)
    await publish(client)
    for i in range(6):
        year = 2025 if i % 2 == 0 else 2026
        await helped(client, f"e{i}", f"{year}-0{i + 1}-01T10:00:00+08:00", 25)
    await shelf(client, soap=(5, 1000))
    for i in range(4):
        await post(client, "/redemptions", redemption(f"r{i}", ("soap", 3)))
        await post(client, "/transactions", transfer(f"s{i}", "member:m0:points", STORE, 7))
    rng = random.Random(14)

    async def act(i: int) -> int:
        await asyncio.sleep(rng.random() / 50)
        if i % 5 == 0:
            return await expire(pool, END_2026 + timedelta(seconds=i))
        if i % 5 == 1 and i // 5 < 4:
            r = await client.post(f"{C}/redemptions/r{i // 5}/return")
        elif i % 5 == 2 and i // 5 < 4:
            r = await client.post(f"{C}/transactions/s{i // 5}/reverse")
        elif i % 5 == 3:
            r = await client.post(f"{C}/redemptions", json=redemption(f"x{i}", ("soap", 2)))
        else:
            r = await client.post(f"{C}/transactions/event:e{i % 6}:help/reverse")
        assert r.status_code in (200, 201, 409, 422), r.text
        return 0

    await asyncio.gather(*(act(i) for i in range(25)))
    # Whatever order they ran in, nothing of 2025 is left once expiry runs after them.
    await expire(pool, END_2026 + timedelta(minutes=1))
    open_lots = await lots(client, status="open")
    assert all(exp is None or exp > END_2026 for _, _, exp in open_lots.values()), open_lots
    shown = await balance(client, "m0")
    assert sum(remaining for _, remaining, _ in open_lots.values()) == shown["points"]["score"]
    await audit_passes(client)


async def test_two_expiry_runs_and_a_return_at_once_expire_each_point_once(
    client: Client, dsn: str
) -> None:
    from service.db import create_pool

    await community(client, members=3)
    await publish(client)
    await shelf(client, soap=(10, 100))
    for m in range(3):
        r = await client.post(f"{C}/events", json=event(f"e{m}", "helped", member=f"m{m}",
                                                        at="2025-06-01T10:00:00+08:00",
                                                        points=50))  # fmt: skip
        assert r.status_code == 201, r.text
        await post(client, "/redemptions", redemption(f"r{m}", ("soap", 3), member=f"m{m}"))
    pools = [await create_pool(dsn, min_size=1, max_size=3) for _ in range(2)]
    try:
        returns = [client.post(f"{C}/redemptions/r{m}/return") for m in range(3)]
        await asyncio.gather(
            *(run_all(p, RuleBook(), END_2026 + timedelta(seconds=5)) for p in pools), *returns
        )
        await run_all(pools[0], RuleBook(), END_2026 + timedelta(minutes=1))
    finally:
        for p in pools:
            await p.close()
    for m in range(3):
        assert (await balance(client, f"m{m}"))["points"]["score"] == 100
    assert await posted(client, EXPIRED) == 150
    await audit_passes(client)
