"""Love supermarket: catalogue, redemptions (stock and points together), returns, scoping."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec

from service.db import q
from service.i18n import DEFAULT_LANGUAGE
from service.ledger.model import RuleParams
from service.supermarket import returns
from service.supermarket import service as market
from tests.helpers import C, Client, award, balance, bearer, community

S = f"{C}/stores/s1"


def redemption(
    rid: str, *items: tuple[str, int], member: str = "m0", store: str = "s1"
) -> dict[str, Any]:
    return {
        "id": rid,
        "store": store,
        "member": member,
        "items": [{"sku": sku, "qty": qty} for sku, qty in items],
    }


async def shelf(client: Client, store: str = "s1", **items: tuple[int, int]) -> None:
    for sku, (points, stock) in items.items():
        r = await client.put(
            f"{C}/stores/{store}/items/{sku}",
            json={"name": sku.title(), "points": points, "stock": stock},
        )
        assert r.status_code in (200, 201), r.text


async def stock(client: Client, store: str = "s1") -> dict[str, int]:
    r = await client.get(f"{C}/stores/{store}/items")
    assert r.status_code == 200, r.text
    return {i["sku"]: i["stock"] for i in r.json()["items"]}


async def test_catalogue_put_and_list(client: Client) -> None:
    await community(client)
    r = await client.put(f"{S}/items/soap", json={"name": "Soap", "points": 5, "stock": 10})
    assert r.status_code == 201 and r.json()["stock"] == 10
    r = await client.put(f"{S}/items/soap", json={"name": "Soap", "points": 6, "stock": 12})
    assert r.status_code == 200 and r.json()["points"] == 6
    await shelf(client, oil=(20, 3), rice=(30, 1))
    page = (await client.get(f"{S}/items", params={"limit": 2})).json()
    assert [i["sku"] for i in page["items"]] == ["oil", "rice"]
    rest = (await client.get(f"{S}/items", params={"cursor": page["next_cursor"]})).json()
    assert [i["sku"] for i in rest["items"]] == ["soap"] and rest["next_cursor"] is None
    for bad in (
        {"name": "x", "points": 1.0, "stock": 1},
        {"name": "x", "points": 0, "stock": 1},
        {"name": "x", "points": 1, "stock": -1},
        {"name": "", "points": 1, "stock": 1},
    ):
        assert (await client.put(f"{S}/items/x", json=bad)).status_code == 422


async def test_redemption_takes_points_and_stock_together(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    await shelf(client, soap=(5, 10), oil=(20, 3))
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 2), ("oil", 1)))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["points"], body["transaction_id"]) == (30, "redemption:r1")
    assert (await balance(client, "m0"))["points"]["redeemable"] == 20
    assert await stock(client) == {"oil": 2, "soap": 8}
    again = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 2), ("oil", 1)))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    other = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 1)))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert (await client.get(f"{C}/accounts/store:s1:redemptions")).json()["posted"] == 30


async def test_a_redemption_is_two_statements_between_begin_and_commit(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The member, the locked items and the id in one statement; the redemption, its
    lines, the stock and the ledger write in another; the answer from what is known.
    A replay reads the stored redemption after its (read-only) transaction."""
    await community(client)
    await award(client, "a1", "m0", 50)
    await shelf(client, soap=(5, 10), oil=(20, 3))
    new = market.NewRedemption(
        id="r1",
        store="s1",
        member="m0",
        items={"soap": 2, "oil": 1},
        request_hash=b"r1",
        actor=None,
    )
    warm_up = msgspec.structs.replace(new, id="r0", items={"soap": 1}, request_hash=b"r0")
    sent: list[str] = []

    def log(query: Any) -> None:
        sent.append(query.query.strip().rstrip(";"))

    async with pool.acquire() as conn:
        # Statements prepared once per connection (and asyncpg's look-up of their
        # types) are not what each redemption costs.
        await market.redeem(conn, "green", warm_up, RuleParams(), language=DEFAULT_LANGUAGE)
        await market.redeem(conn, "green", warm_up, RuleParams(), language=DEFAULT_LANGUAGE)
        conn.add_query_logger(log)
        try:
            created, created_replayed = await market.redeem(
                conn, "green", new, RuleParams(), language=DEFAULT_LANGUAGE
            )
            await asyncio.sleep(0)  # loggers are called soon, not at once
            assert sent == ["BEGIN", q("redemption_prepare"), q("redemption_write"), "COMMIT"]
            sent.clear()
            replay, replayed = await market.redeem(
                conn, "green", new, RuleParams(), language=DEFAULT_LANGUAGE
            )
            await asyncio.sleep(0)
            assert sent == ["BEGIN", q("redemption_prepare"), "COMMIT", q("redemption_get")]
        finally:
            conn.remove_query_logger(log)
    assert (created_replayed, replayed) == (False, True)
    assert replay == created
    got = await client.get(f"{C}/redemptions/r1")
    assert got.json() == msgspec.to_builtins(created)
    # After a return, a replay still answers as the creation did; a read shows the return.
    r = await client.post(f"{C}/redemptions/r1/return", json={"items": [{"sku": "soap", "qty": 1}]})
    assert r.status_code == 201, r.text
    async with pool.acquire() as conn:
        replay, replayed = await market.redeem(
            conn, "green", new, RuleParams(), language=DEFAULT_LANGUAGE
        )
    assert (replay, replayed) == (created, True)
    got = await client.get(f"{C}/redemptions/r1")
    assert (got.json()["returned_points"], got.json()["items"][1]["returned"]) == (5, 1)


async def test_a_return_is_two_statements_between_begin_and_commit(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The redemption locked with its lines and returns in one statement; the stock,
    lines, ledger write and the return's row in another. A replay reads it back."""
    await community(client)
    await award(client, "a1", "m0", 50)
    await shelf(client, soap=(5, 10))
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 4)))
    assert r.status_code == 201, r.text
    first = returns.NewReturn(
        redemption="r1", store=None, id="x1", items={"soap": 1}, request_hash=b"x", actor=None
    )
    second = msgspec.structs.replace(first, id="x2")
    sent: list[str] = []

    def log(query: Any) -> None:
        sent.append(query.query.strip().rstrip(";"))

    async with pool.acquire() as conn:
        # A return and its replay prepare their statements before any is counted.
        await returns.return_items(conn, "green", first, RuleParams(), language=DEFAULT_LANGUAGE)
        await returns.return_items(conn, "green", first, RuleParams(), language=DEFAULT_LANGUAGE)
        conn.add_query_logger(log)
        try:
            made, replayed = await returns.return_items(
                conn, "green", second, RuleParams(), language=DEFAULT_LANGUAGE
            )
            await asyncio.sleep(0)
            prepare, write = q("redemption_return_prepare"), q("redemption_return_write")
            assert (sent, replayed) == (["BEGIN", prepare, write, "COMMIT"], False)
            sent.clear()
            again, replayed = await returns.return_items(
                conn, "green", second, RuleParams(), language=DEFAULT_LANGUAGE
            )
            await asyncio.sleep(0)
            get = q("redemption_return_get")
            assert (sent, replayed) == (["BEGIN", prepare, "COMMIT", get], True)
        finally:
            conn.remove_query_logger(log)
    assert again == made
    assert (made.points, made.transaction_id) == (5, "redemption:r1:return:x2")
    assert await stock(client) == {"soap": 8}


async def test_refusals_change_nothing(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 25)
    await shelf(client, soap=(5, 10), oil=(20, 1))
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 1), ("oil", 2)))
    assert r.status_code == 409
    assert (r.json()["code"], r.json()["sku"], r.json()["available"]) == ("out_of_stock", "oil", 1)
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 2), ("oil", 1)))
    assert r.status_code == 409 and r.json()["code"] == "insufficient_points"
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("tea", 1)))
    assert r.status_code == 404 and r.json()["sku"] == "tea"
    assert (await client.get(f"{C}/redemptions/r1")).status_code == 404
    assert await stock(client) == {"oil": 1, "soap": 10}
    assert (await balance(client, "m0"))["points"]["redeemable"] == 25
    for bad in (
        redemption("r1", ("soap", 1), ("soap", 1)),
        redemption("r1", ("soap", 0)),
        redemption("r1"),
        {**redemption("r1", ("soap", 1)), "items": [{"sku": "soap", "qty": 1.0}]},
    ):
        assert (await client.post(f"{C}/redemptions", json=bad)).status_code == 422
    assert (
        await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 1), member="x"))
    ).status_code == 404


async def test_returns_some_then_the_rest_never_more(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 100)
    await shelf(client, soap=(5, 10), oil=(20, 3))
    await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 4), ("oil", 2)))
    assert (await balance(client, "m0"))["points"]["score"] == 140
    ret = f"{C}/redemptions/r1/return"
    r = await client.post(ret, json={"id": "ret1", "items": [{"sku": "soap", "qty": 3}]})
    assert r.status_code == 201, r.text
    assert (r.json()["points"], r.json()["items"]) == (
        15,
        [{"sku": "soap", "qty": 3, "points": 15}],
    )
    again = await client.post(ret, json={"id": "ret1", "items": [{"sku": "soap", "qty": 3}]})
    assert again.status_code == 200 and again.json() == r.json()
    conflict = await client.post(ret, json={"id": "ret1", "items": [{"sku": "soap", "qty": 1}]})
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    too_many = await client.post(ret, json={"items": [{"sku": "soap", "qty": 2}]})
    assert too_many.status_code == 409 and too_many.json()["returnable"] == 1
    assert (await client.post(ret, json={"items": [{"sku": "tea", "qty": 1}]})).status_code == 422
    assert (await balance(client, "m0"))["points"]["score"] == 155
    assert await stock(client) == {"oil": 1, "soap": 9}
    rest = await client.post(ret)
    assert rest.status_code == 201 and rest.json()["points"] == 45
    assert await stock(client) == {"oil": 3, "soap": 10}
    assert (await balance(client, "m0"))["points"]["score"] == 200
    got = (await client.get(f"{C}/redemptions/r1")).json()
    assert got["returned_points"] == 60 and all(i["returned"] == i["qty"] for i in got["items"])
    nothing = await client.post(ret)
    assert nothing.status_code == 409 and nothing.json()["code"] == "invalid_state"
    assert (await client.get(f"{C}/accounts/store:s1:redemptions")).json()["posted"] == 0


async def test_store_key_acts_only_for_its_store(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 100)
    r = await client.post(
        "/v1/api-keys", json={"role": "store", "community": "green", "store": "s1"}
    )
    s1 = bearer(r.json()["key"])
    r = await client.post(
        "/v1/api-keys", json={"role": "store", "community": "green", "store": "s2"}
    )
    s2 = bearer(r.json()["key"])
    # The resident's PIN, set at the service desk, is the consent a till needs.
    assert (await client.put(f"{C}/members/m0/pin", json={"pin": "123456"})).status_code == 200
    pin = {"consent": {"pin": "123456"}}
    item = {"name": "Soap", "points": 5, "stock": 10}
    assert (await client.put(f"{S}/items/soap", json=item, headers=s1)).status_code == 201
    assert (await client.put(f"{S}/items/soap", json=item, headers=s2)).status_code == 403
    assert (await client.get(f"{S}/items", headers=s2)).status_code == 403
    r = await client.post(
        f"{C}/redemptions", json={**redemption("r1", ("soap", 1)), **pin}, headers=s2
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post(
        f"{C}/redemptions", json={**redemption("r1", ("soap", 1)), **pin}, headers=s1
    )
    assert r.status_code == 201
    assert (await client.get(f"{C}/redemptions/r1", headers=s2)).status_code == 404
    assert (await client.post(f"{C}/redemptions/r1/return", headers=s2)).status_code == 404
    assert (await client.post(f"{C}/redemptions/r1/return", headers=s1)).status_code == 201
    assert (await client.get(f"{C}/reports/summary", headers=s1)).status_code == 403
