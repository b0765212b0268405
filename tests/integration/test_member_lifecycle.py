"""Member lifecycle (issue 14): a member who moves out is closed, and a member may
change household; neither loses history. Through the real HTTP API and database.

Closing moves the member's redeemable points (above the baseline) to the account
the rule set names (`member_close.points_to`, default `system:expired:points`) and
its minutes to `member_close.minutes_to` (default the time bank's pool), in one
transaction with the status change; afterwards nothing may credit, debit or hold
either account (409 `member_closed`), and the statement keeps everything.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from service.db import on_citus, unit_of_work
from service.errors import MemberClosed
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.service import create
from tests.concurrency.conftest import api as api  # requests that really interleave
from tests.helpers import OFFSETS, STORE, C, Client, award, balance, bearer, community, transfer

EXPIRED = "system:expired:points"
POOL = "system:timebank:minutes"


async def minutes(client: Client, tx_id: str, member: str, amount: int) -> None:
    body = transfer(tx_id, POOL, f"member:{member}:minutes", amount, asset="minutes")
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


async def publish(client: Client, **document: Any) -> None:
    r = await client.put(f"{C}/rules", json={"baseline": 100, **document})
    assert r.status_code == 201, r.text


async def close(client: Client, member: str, **body: Any) -> httpx.Response:
    return await client.post(f"{C}/members/{member}/close", json=body)


async def closed(client: Client, member: str, **body: Any) -> dict[str, Any]:
    r = await close(client, member, **body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def posted(client: Client, address: str) -> int:
    r = await client.get(f"{C}/accounts/{address}")
    assert r.status_code == 200, r.text
    amount: int = r.json()["posted"]
    return amount


def refused_as_closed(r: httpx.Response) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "member_closed", r.text


async def key(client: Client, role: str, **scope: str) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def test_close_forfeits_redeemable_points_and_keeps_the_baseline(client: Client) -> None:
    """By default the points above the baseline go to system:expired:points and the
    minutes back to the time bank's pool, in one `member_close` transaction with the
    reason given; the baseline stays, and the statement shows the close."""
    await community(client)
    await award(client, "a1", "m0", 50)
    await minutes(client, "t1", "m0", 90)
    body = await closed(client, "m0", reason="moved to Hangzhou")
    member, tx = body["member"], body["transaction"]
    assert (member["id"], member["status"], member["close_reason"]) == (
        "m0",
        "closed",
        "moved to Hangzhou",
    )
    assert member["closed_at"] is not None
    assert (tx["id"], tx["kind"], tx["status"], tx["reason"]) == (
        "close:m0",
        "member_close",
        "posted",
        "moved to Hangzhou",
    )
    assert {(p["destination"], p["asset"], p["amount"]) for p in tx["postings"]} == {
        (EXPIRED, "points", 50),
        (POOL, "minutes", 90),
    }
    assert await balance(client, "m0") == {
        "points": {"score": 100, "held": 0, "baseline": 100, "redeemable": 0, "expiring": []},
        "minutes": {"balance": 0, "held": 0, "expiring": []},
    }
    assert await posted(client, EXPIRED) == 50
    shown = (await client.get(f"{C}/members/m0")).json()
    assert (shown["status"], shown["closed_at"]) == ("closed", member["closed_at"])
    statement = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    assert [
        (e["transaction_id"], e["kind"], e["amount"], e["balance_after"]) for e in statement
    ] == [
        ("close:m0", "member_close", -50, 100),
        ("a1", "transfer", 50, 150),
        ("m0:opening", "opening", 100, 100),
    ]
    assert statement[0]["reason"] == "moved to Hangzhou"
    times = (await client.get(f"{C}/members/m0/statement?asset=minutes")).json()["entries"]
    assert [(e["transaction_id"], e["amount"]) for e in times] == [("close:m0", -90), ("t1", 90)]
    assert (await client.get(f"{C}/members/m1")).json()["status"] == "active"


async def test_close_sends_points_where_the_rule_set_says(client: Client) -> None:
    """`member_close.points_to` names the account; without a reason the community's
    default one is written; a member below the baseline has nothing to move."""
    await community(client, members=3)
    await publish(client, member_close={"points_to": "system:adjustments:points"})
    await award(client, "a1", "m0", 30)
    body = await closed(client, "m0")
    [posting] = body["transaction"]["postings"]
    assert (posting["source"], posting["destination"], posting["amount"]) == (
        "member:m0:points",
        "system:adjustments:points",
        30,
    )
    assert body["transaction"]["reason"] == "迁出清零"
    assert body["member"]["close_reason"] == "迁出清零"
    assert await posted(client, "system:adjustments:points") == 30
    assert await posted(client, EXPIRED) == 0
    # Below the baseline: nothing is redeemable, so nothing moves, and the score stays.
    await publish(client, baseline=120)
    body = await closed(client, "m1")
    assert body["transaction"] is None
    assert (await balance(client, "m1"))["points"]["score"] == 100


@pytest.mark.parametrize(
    "destination",
    [
        {"points_to": "member:m1:points"},
        {"points_to": "system:expired:minutes"},
        {"points_to": "store:s1:redemptions"},
        {"points_to": "nowhere"},
        {"minutes_to": "system:expired:points"},
        {"minutes_to": "member:m1:minutes"},
    ],
)
async def test_a_rule_set_names_only_system_accounts_of_the_right_asset(
    client: Client, destination: dict[str, str]
) -> None:
    await community(client)
    r = await client.put(f"{C}/rules", json={"member_close": destination})
    assert r.status_code == 422, r.text
    assert "member_close" in r.json()["detail"], r.text


async def test_a_closed_member_is_neither_spent_nor_credited(client: Client) -> None:
    """Redemptions, offsets, awards, transfers either way, time transfers, conversions
    and volunteer hours are all refused with 409 member_closed, changing nothing:
    also once a lower baseline makes part of the kept score redeemable again."""
    await community(client)
    await client.put(f"{C}/stores/s1/items/soap", json={"name": "soap", "points": 5, "stock": 3})
    await award(client, "a1", "m0", 50)
    await minutes(client, "t1", "m1", 10)
    await closed(client, "m0")
    for lowered in (False, True):
        if lowered:
            await publish(
                client,
                baseline=50,
                rules=[{"id": "fee-on-time", "on": "fee.paid", "award": 20, "reason": "按时缴费"}],
            )
        before = await balance(client, "m0")
        n = int(lowered)
        attempts = [
            (
                f"{C}/redemptions",
                {
                    "id": f"r{n}",
                    "store": "s1",
                    "member": "m0",
                    "items": [{"sku": "soap", "qty": 1}],
                },
            ),
            (
                OFFSETS,
                {
                    "id": f"o{n}",
                    "member": "m0",
                    "household": "h0",
                    "bill_amount_fen": 100,
                    "points": 1,
                },
            ),
            (
                f"{C}/transactions",
                transfer(f"in{n}", "system:issuance:points", "member:m0:points", 5),
            ),
            (f"{C}/transactions", transfer(f"out{n}", "member:m0:points", EXPIRED, 5)),
            (
                f"{C}/transactions",
                transfer(f"hold{n}", "member:m0:points", EXPIRED, 5, pending={"ttl_s": 60}),
            ),
            (
                f"{C}/time-transfers",
                {"id": f"tt{n}", "from_member": "m1", "to_member": "m0", "minutes": 1},
            ),
            (
                f"{C}/time-transfers",
                {"id": f"tf{n}", "from_member": "m0", "to_member": "m1", "minutes": 1},
            ),
            (f"{C}/conversions", {"id": f"cv{n}", "member": "m0", "minutes": 6}),
            (
                f"{C}/volunteer-hours",
                {
                    "id": f"vh{n}",
                    "member": "m0",
                    "activity": "garden",
                    "started_at": "2026-11-20T10:00:00+08:00",
                    "minutes": 60,
                },
            ),
        ]
        for path, body in attempts:
            refused_as_closed(await client.post(path, json=body))
        if lowered:
            event = {
                "id": "e1",
                "type": "fee.paid",
                "member": "m0",
                "occurred_at": "2026-11-20T10:00:00+08:00",
                "attributes": {},
            }
            refused_as_closed(await client.post(f"{C}/events", json=event))
            assert (await balance(client, "m0"))["points"]["redeemable"] == 50
        assert (await balance(client, "m0"))["points"]["score"] == before["points"]["score"] == 100
        quote = {"member": "m0", "household": "h0", "bill_amount_fen": 100}
        refused_as_closed(await client.post(f"{OFFSETS}/quote", json=quote))
    for n in (0, 1):
        for tx in ("in", "out", "hold", "tt", "tf", "cv", "vh:vh", "redemption:r", "offset:o"):
            assert (await client.get(f"{C}/transactions/{tx}{n}")).status_code == 404, (tx, n)
        assert (await client.get(f"{C}/volunteer-hours/vh{n}")).status_code == 404
    assert (await client.get(f"{C}/transactions/event:e1:fee-on-time")).status_code == 404
    items = (await client.get(f"{C}/stores/s1/items")).json()["items"]
    assert [(i["sku"], i["stock"]) for i in items] == [("soap", 3)]
    assert await balance(client, "m1") == {
        "points": {"score": 100, "held": 0, "baseline": 50, "redeemable": 50, "expiring": []},
        "minutes": {"balance": 10, "held": 0, "expiring": []},
    }


async def test_what_was_spent_before_the_close_cannot_come_back(client: Client) -> None:
    """A return of goods, or the cancel of an applied offset, would give points back
    to the closed account: refused, and the redemption and offset stay as they were."""
    await community(client)
    await client.put(f"{C}/stores/s1/items/soap", json={"name": "soap", "points": 5, "stock": 3})
    await award(client, "a1", "m0", 50)
    basket = {"id": "r0", "store": "s1", "member": "m0", "items": [{"sku": "soap", "qty": 2}]}
    assert (await client.post(f"{C}/redemptions", json=basket)).status_code == 201
    bill = {"id": "o0", "member": "m0", "household": "h0", "bill_amount_fen": 1000, "points": 10}
    assert (await client.post(OFFSETS, json=bill)).status_code == 201
    body = await closed(client, "m0")
    assert body["transaction"]["postings"][0]["amount"] == 30
    refused_as_closed(await client.post(f"{C}/redemptions/r0/return", json={}))
    refused_as_closed(await client.post(f"{OFFSETS}/o0/cancel"))
    assert (await client.get(f"{OFFSETS}/o0")).json()["status"] == "applied"
    assert (await client.get(f"{C}/redemptions/r0")).json()["returned_points"] == 0
    items = (await client.get(f"{C}/stores/s1/items")).json()["items"]
    assert [(i["sku"], i["stock"]) for i in items] == [("soap", 1)]
    # Replays of what was done before the close still answer as they did.
    again = await client.post(f"{C}/redemptions", json=basket)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    again = await client.post(OFFSETS, json=bill)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert (await balance(client, "m0"))["points"]["score"] == 100


async def test_the_database_keeps_a_closed_member_closed(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The second guard: a write that no service check saw (straight through the
    ledger's use case, or raw SQL) cannot change a closed account or reopen it."""
    await community(client, households=2)
    r = await client.put(f"{C}/members/m0/household", json={"household": "h1"})
    assert r.status_code == 200, r.text
    await closed(client, "m0")
    credit = NewTransaction(
        client_id="behind-the-back",
        postings=(
            Posting(
                source="system:issuance:points",
                destination="member:m0:points",
                asset="points",
                amount=1,
            ),
        ),
        request_hash=b"x",
    )
    async with pool.acquire() as conn:
        with pytest.raises(MemberClosed):
            await unit_of_work(conn, lambda: create(conn, "green", credit, RuleParams()))
        for statement in (
            "UPDATE accounts SET posted = posted + 1 WHERE address = 'member:m0:points'",
            "UPDATE accounts SET closed_at = NULL WHERE address = 'member:m0:minutes'",
            "UPDATE members SET closed_at = NULL, close_reason = NULL WHERE id = 'm0'",
            "UPDATE members SET household_id = 'h0' WHERE id = 'm0'",
            "DELETE FROM member_households",
        ):
            with pytest.raises(asyncpg.PostgresError) as raised:
                await conn.execute(statement)
            assert raised.value.sqlstate in ("LG409", "LG403"), statement
    assert (await client.get(f"{C}/members/m0")).json()["status"] == "closed"


async def test_close_waits_for_pending_transactions(client: Client) -> None:
    """A hold or a pending credit must be applied, cancelled or rejected first: a
    closed account could never settle it. Nothing changes while it is refused."""
    await community(client)
    await award(client, "a1", "m0", 50)
    hold = transfer("h1", "member:m0:points", "property:acme:offsets", 20, pending={})
    assert (await client.post(f"{C}/transactions", json=hold)).status_code == 201
    r = await close(client, "m0")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state", r.text
    assert r.json()["pending"] == ["h1"]
    assert (await client.get(f"{C}/members/m0")).json()["status"] == "active"
    assert (await client.post(f"{C}/transactions/h1/void")).status_code == 200
    body = await closed(client, "m0")
    assert body["transaction"]["postings"][0]["amount"] == 50


async def test_closing_twice_is_idempotent(client: Client) -> None:
    """A second close (whatever its reason) answers with the first, marked as a replay."""
    await community(client)
    await award(client, "a1", "m0", 40)
    first = await closed(client, "m0", reason="moved out")
    again = await close(client, "m0", reason="another reason")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first
    assert await posted(client, EXPIRED) == 40
    assert (await close(client, "nobody")).status_code == 404


async def test_concurrent_closes_move_the_points_once(api: httpx.AsyncClient) -> None:
    await community(api, members=1)
    await award(api, "a1", "m0", 40)
    results = await asyncio.gather(*(api.post(f"{C}/members/m0/close", json={}) for _ in range(4)))
    assert {r.status_code for r in results} == {200}
    assert sorted(r.headers.get("idempotent-replayed", "false") for r in results) == [
        "false",
        "true",
        "true",
        "true",
    ]
    assert len({r.text for r in results}) == 1
    assert (await api.get(f"{C}/accounts/{EXPIRED}")).json()["posted"] == 40


async def test_close_and_redemption_race_consistently(api: httpx.AsyncClient) -> None:
    """A close and a redemption of the same member at once: either the redemption
    took its points first and the close moved the rest, or the close took all the
    redeemable points and the redemption was refused; never both, never neither."""
    await community(api, members=6)
    item = {"name": "rice", "points": 30, "stock": 100}
    assert (await api.put(f"{C}/stores/s1/items/rice", json=item)).status_code == 201
    for m in range(6):
        await award(api, f"a{m}", f"m{m}", 50)
    for m in range(6):
        redemption = {
            "id": f"r{m}",
            "store": "s1",
            "member": f"m{m}",
            "items": [{"sku": "rice", "qty": 1}],
        }
        calls = [api.post(f"{C}/members/m{m}/close", json={})]
        calls.insert(m % 2, api.post(f"{C}/redemptions", json=redemption))  # either first
        results = await asyncio.gather(*calls)
        shut, bought = (results[1], results[0]) if m % 2 == 0 else (results[0], results[1])
        assert shut.status_code == 200, shut.text
        moved = shut.json()["transaction"]["postings"][0]["amount"]
        if bought.status_code == 201:
            assert moved == 20
        else:
            assert bought.status_code == 409, bought.text
            assert bought.json()["code"] in ("member_closed", "insufficient_points")
            assert moved == 50
        assert (await api.get(f"{C}/members/m{m}/balance")).json()["points"]["score"] == 100
    stock = (await api.get(f"{C}/stores/s1/items")).json()["items"][0]["stock"]
    shop = (await api.get(f"{C}/accounts/{STORE}")).json().get("posted", 0)  # 404: none sold
    expired = (await api.get(f"{C}/accounts/{EXPIRED}")).json()["posted"]
    assert shop == 30 * (100 - stock)
    assert shop + expired == 6 * 50  # every redeemable point went exactly one way


async def lock_waiters(pool: asyncpg.Pool, count: int) -> None:
    """Returns once `count` backends wait for a lock; fails the test if they never do.
    On Citus, of every node (`citus_stat_activity`): the use cases' calls are
    delegated to the worker that holds the community, and wait there."""
    view = "citus_stat_activity" if await on_citus(pool) else "pg_stat_activity"
    for _ in range(500):
        waiting = await pool.fetchval(
            f"SELECT count(*) FROM {view}"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{count} writers never waited for the member's account")


@pytest.mark.parametrize("first", ["close", "redemption"])
async def test_a_close_and_a_redemption_queued_on_the_account_go_in_turn(
    api: httpx.AsyncClient, pool: asyncpg.Pool, first: str
) -> None:
    """Both wait for the member's points account (held here by another transaction)
    and go in the order they came: the redemption first leaves 20 for the close; the
    close first leaves nothing to redeem, and the redemption is refused, changing
    nothing."""
    await community(api, members=1)
    item = {"name": "rice", "points": 30, "stock": 10}
    assert (await api.put(f"{C}/stores/s1/items/rice", json=item)).status_code == 201
    await award(api, "a1", "m0", 50)
    redemption = {"id": "r1", "store": "s1", "member": "m0", "items": [{"sku": "rice", "qty": 1}]}
    calls = {
        "close": lambda: api.post(f"{C}/members/m0/close", json={}),
        "redemption": lambda: api.post(f"{C}/redemptions", json=redemption),
    }
    order = [first, *(name for name in calls if name != first)]
    async with pool.acquire() as holder:
        lock = holder.transaction()
        await lock.start()
        await holder.execute(
            "SELECT 1 FROM accounts WHERE community_id = 'green'"
            " AND address = 'member:m0:points' FOR UPDATE"
        )
        tasks = {}
        for waiting, name in enumerate(order, 1):
            tasks[name] = asyncio.create_task(calls[name]())
            await lock_waiters(pool, waiting)
        await lock.rollback()
        shut, bought = await tasks["close"], await tasks["redemption"]
    assert shut.status_code == 200, shut.text
    [posting] = shut.json()["transaction"]["postings"]
    if first == "redemption":
        assert bought.status_code == 201, bought.text
        assert posting["amount"] == 20
    else:
        refused_as_closed(bought)
        assert posting["amount"] == 50
        assert (await api.get(f"{C}/redemptions/r1")).status_code == 404
    stock = (await api.get(f"{C}/stores/s1/items")).json()["items"][0]["stock"]
    assert stock == (9 if first == "redemption" else 10)
    assert (await api.get(f"{C}/members/m0/balance")).json()["points"]["score"] == 100


async def test_a_household_change_moves_future_offsets_and_keeps_history(
    client: Client,
) -> None:
    """The member moves to a household of another company: offsets from then on are
    for the new household (and its company), the old ones stay as they were, and the
    change is recorded with when and by whom."""
    await community(client, members=1, households=2)  # h0: acme, h1: other
    await award(client, "a1", "m0", 50)
    old = {"id": "o1", "member": "m0", "household": "h0", "bill_amount_fen": 1000, "points": 10}
    assert (await client.post(OFFSETS, json=old)).status_code == 201
    acme = await key(client, "property", property_company="acme")
    other = await key(client, "property", property_company="other")
    r = await client.put(f"{C}/members/m0/household", json={"household": "h1"})
    assert r.status_code == 200, r.text
    assert (r.json()["household"], r.json()["property_company"]) == ("h1", "other")
    shown = (await client.get(f"{C}/members/m0")).json()
    assert (shown["household"], shown["status"]) == ("h1", "active")
    again = await client.put(f"{C}/members/m0/household", json={"household": "h1"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    stale = {**old, "id": "o2"}
    assert (await client.post(OFFSETS, json=stale)).status_code == 422
    assert (await client.post(OFFSETS, json=stale, headers=acme)).status_code == 404
    new = {**stale, "household": "h1"}
    r = await client.put(f"{C}/members/m0/mandates/other", json={"max_points_per_bill": 10})
    assert r.status_code == 200, r.text
    r = await client.post(OFFSETS, json=new, headers=other)
    assert r.status_code == 201, r.text
    assert (await client.get(f"{OFFSETS}/o1")).json()["household"] == "h0"
    assert (await client.get(f"{OFFSETS}/o1", headers=acme)).status_code == 200
    assert (await client.get(f"{C}/members/m0", headers=acme)).status_code == 404
    history = (await client.get(f"{C}/members/m0/household/history")).json()["changes"]
    assert [(h["from_household"], h["to_household"], h["changed_by"]) for h in history] == [
        ("h0", "h1", "env-admin")
    ]
    assert history[0]["changed_at"] is not None
    r = await client.put(f"{C}/members/m0/household", json={"household": "nowhere"})
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert (
        await client.put(f"{C}/members/nobody/household", json={"household": "h0"})
    ).status_code == 404
    await closed(client, "m0")
    refused_as_closed(await client.put(f"{C}/members/m0/household", json={"household": "h0"}))
    assert len((await client.get(f"{C}/members/m0/household/history")).json()["changes"]) == 1


async def test_only_operators_close_or_move_members(client: Client) -> None:
    await community(client, households=2)
    keys = [
        await key(client, "property", property_company="acme"),
        await key(client, "store", store="s1"),
        await key(client, "resident", member="m0"),
        await key(client, "volunteer_app"),
    ]
    for headers in keys:
        r = await client.post(f"{C}/members/m0/close", json={}, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        r = await client.put(f"{C}/members/m0/household", json={"household": "h1"}, headers=headers)
        assert r.status_code == 403, r.text
        r = await client.get(f"{C}/members/m0/household/history", headers=headers)
        assert r.status_code == 403, r.text
    assert (await client.get(f"{C}/members/m0")).json()["household"] == "h0"
    operator = await key(client, "operator")
    moved = await client.put(
        f"{C}/members/m0/household", json={"household": "h1"}, headers=operator
    )
    assert moved.status_code == 200, moved.text
    r = await client.post(f"{C}/members/m0/close", json={}, headers=operator)
    assert r.status_code == 200 and r.json()["member"]["status"] == "closed", r.text
