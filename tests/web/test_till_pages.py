"""The till's pages over HTTP: a sale by spend code, its receipt, a return; the
refusals in a volunteer's words, each changing nothing; the code look-up telling
a guesser nothing; and who may open the till at all."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.helpers import C, award, balance, bearer, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}
OP_ID = re.compile(r'name="op_id" value="([^"]+)"')


async def _key(client: Client, role: str, community_id: str = "green", **scope: str) -> str:
    r = await client.post("/v1/api-keys", json={"role": role, "community": community_id, **scope})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


async def shop(client: Client) -> None:
    """Community green: m0 with 100 points, m1 with 10; store s1 with soap (5
    points, 10 in stock), oil (20, 10) and rice (30, none left); s2 with soap."""
    await community(client)
    await award(client, "a-m0", "m0", 100)
    await award(client, "a-m1", "m1", 10)
    for store, sku, name, points, stock in (
        ("s1", "soap", "肥皂", 5, 10),
        ("s1", "oil", "食用油", 20, 10),
        ("s1", "rice", "大米", 30, 0),
        ("s2", "soap", "肥皂", 5, 10),
    ):
        item = {"name": name, "points": points, "stock": stock}
        r = await client.put(f"{C}/stores/{store}/items/{sku}", json=item)
        assert r.status_code in (200, 201), r.text


async def spend_code(client: Client, member: str = "m0", **body: Any) -> str:
    resident = bearer(await _key(client, "resident", member=member))
    r = await client.post(
        f"{C}/members/{member}/spend-codes", json={"max_points": 100, **body}, headers=resident
    )
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


async def state(client: Client) -> tuple[int, int, dict[str, int]]:
    """m0's and m1's redeemable points and s1's stock by sku."""
    items = (await client.get(f"{C}/stores/s1/items")).json()["items"]
    m0 = (await balance(client, "m0"))["points"]["redeemable"]
    m1 = (await balance(client, "m1"))["points"]["redeemable"]
    return m0, m1, {i["sku"]: i["stock"] for i in items}


async def till(client: Client, browser: Client, store: str = "s1") -> str:
    """Signs the browser in with a store key; the csrf token of the till's page."""
    assert await sign_in_with_key(browser, await _key(client, "store", store=store)) == "/app/till"
    r = await browser.get("/app/till")
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


async def find(browser: Client, csrf: str, code: str, query: str = "") -> Any:
    return await browser.post(
        f"/app/till/code{query}", data={"csrf": csrf, "code": code}, headers=SAME
    )


def op_id(page: str) -> str:
    found = OP_ID.search(page)
    assert found, "the form has no client id"
    return found.group(1)


async def sell(
    browser: Client, csrf: str, code: str, op: str, member: str = "m0", **qty: int
) -> Any:
    """Sends the basket form as the page does (the member it found for the code)."""
    data = {"csrf": csrf, "code": code, "op_id": op, "member": member}
    data.update({f"qty.{k}": str(v) for k, v in qty.items()})
    return await browser.post("/app/till/sale", data=data, headers=SAME)


async def test_a_sale_by_spend_code_its_receipt_and_a_return(
    client: Client, browser_client: Client
) -> None:
    await shop(client)
    csrf = await till(client, browser_client)
    page = (await browser_client.get("/app/till")).text
    assert "扫码" in page and 'id="code"' in page and "/app/static/till.js" in page
    code = await spend_code(client)

    r = await find(browser_client, csrf, code)
    assert r.status_code == 200, r.text
    assert "居民：m0" in r.text and "最多可用 100 积分" in r.text and code not in r.url.path
    assert "肥皂" in r.text and "食用油" in r.text and "大米" in r.text and "缺货" in r.text
    assert re.search(r'id="qty-rice"[^>]*disabled', r.text), "a sold-out item can be chosen"
    op = op_id(r.text)
    # Looking the code up did not use it: the state is as before.
    assert await state(client) == (100, 10, {"oil": 10, "rice": 0, "soap": 10})

    r = await sell(browser_client, csrf, code, op, soap=2, oil=1)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/app/till/receipts/{op}"
    assert await state(client) == (70, 10, {"oil": 9, "rice": 0, "soap": 8})
    api = (await client.get(f"{C}/redemptions/{op}")).json()
    assert (api["member"], api["store"], api["points"]) == ("m0", "s1", 30)

    # A double tap sends the same form again: a replay, not a second sale.
    again = await sell(browser_client, csrf, code, op, soap=2, oil=1)
    assert (again.status_code, again.headers["location"]) == (303, f"/app/till/receipts/{op}")
    assert await state(client) == (70, 10, {"oil": 9, "rice": 0, "soap": 8})

    receipt = await browser_client.get(f"/app/till/receipts/{op}")
    assert receipt.status_code == 200
    text = receipt.text
    assert 'id="receipt-total">30<' in text and 'id="receipt-returned">0<' in text
    assert "m0" in text and "s1" in text and "data-print" in text and code not in text

    back = await browser_client.post(
        f"/app/till/receipts/{op}/return",
        data={"csrf": csrf, "op_id": op_id(text), "qty.oil": "1", "qty.soap": "0"},
        headers=SAME,
    )
    assert back.status_code == 303, back.text
    assert back.headers["location"] == f"/app/till/receipts/{op}?done=return"
    assert await state(client) == (90, 10, {"oil": 10, "rice": 0, "soap": 8})
    # The same return form again is a replay.
    replay = await browser_client.post(
        f"/app/till/receipts/{op}/return",
        data={"csrf": csrf, "op_id": op_id(text), "qty.oil": "1"},
        headers=SAME,
    )
    assert replay.status_code == 303 and await state(client) == (
        90,
        10,
        {"oil": 10, "rice": 0, "soap": 8},
    )
    shown = (await browser_client.get(back.headers["location"])).text
    api = (await client.get(f"{C}/redemptions/{op}")).json()
    assert api["returned_points"] == 20
    assert 'id="receipt-returned">20<' in shown and 'id="receipt-net">10<' in shown
    assert "退货完成" in shown and "食用油：退几件" not in shown  # oil is all back

    today = await browser_client.get("/app/till/today")
    assert today.status_code == 200
    assert f'href="/app/till/receipts/{op}"' in today.text
    assert 'id="today-sales">1<' in today.text and 'id="today-sold">30<' in today.text
    assert 'id="today-returned">20<' in today.text

    english = await browser_client.get(f"/app/till/receipts/{op}?lang=en")
    assert "Receipt" in english.text and "Points given back" in english.text


async def test_refusals_are_in_a_volunteers_words_and_change_nothing(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await shop(client)
    csrf = await till(client, browser_client)
    before = await state(client)

    # m1 has 10 points: oil costs 20.
    poor = await spend_code(client, "m1")
    op = op_id((await find(browser_client, csrf, poor)).text)
    r = await sell(browser_client, csrf, poor, op, "m1", oil=1)
    assert r.status_code == 409 and "积分不够：还差 10 分" in r.text, r.text
    assert 'value="1"' in r.text  # the basket is kept
    # More soap than there is.
    r = await sell(browser_client, csrf, poor, op, "m1", soap=11)
    assert r.status_code == 409 and "库存不足：肥皂 只剩 10 件" in r.text, r.text
    # Nothing chosen.
    r = await sell(browser_client, csrf, poor, op, "m1")
    assert r.status_code == 422 and "请至少选一件商品" in r.text
    # A code for 10 points, a basket of 20.
    small = await spend_code(client, "m0", max_points=10)
    op = op_id((await find(browser_client, csrf, small)).text)
    r = await sell(browser_client, csrf, small, op, oil=1)
    assert r.status_code == 403 and "请居民重新出示消费码" in r.text and "额度" in r.text
    assert 'name="qty.oil" value="1"' in r.text  # kept for the next code
    assert await state(client) == before
    # The code was not used by any of that: a sale within it goes through.
    r = await sell(browser_client, csrf, small, op, soap=2)
    assert r.status_code == 303, r.text
    # A second sale with the used code.
    r = await sell(browser_client, csrf, small, "till-second", soap=1)
    assert r.status_code == 403 and "请居民重新出示消费码" in r.text
    r = await find(browser_client, csrf, small)
    assert r.status_code == 403 and "请居民重新出示消费码" in r.text
    assert await state(client) == (90, 10, {"oil": 10, "rice": 0, "soap": 8})
    assert (await client.get(f"{C}/redemptions/till-second")).status_code == 404
    r = await find(browser_client, csrf, small, "?lang=en")
    assert "Ask the resident to show a new spend code" in r.text

    # A form from another site, or without the session's token, is refused.
    r = await browser_client.post(
        "/app/till/sale",
        data={"csrf": csrf, "code": poor, "op_id": "x", "qty.soap": "1"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403
    r = await browser_client.post(
        "/app/till/sale", data={"code": poor, "op_id": "x", "qty.soap": "1"}, headers=SAME
    )
    assert r.status_code == 403
    assert await state(client) == (90, 10, {"oil": 10, "rice": 0, "soap": 8})


async def test_the_code_look_up_tells_a_guesser_nothing_and_is_rate_limited(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await shop(client)
    csrf = await till(client, browser_client)
    expired = await spend_code(client)
    other_store = await spend_code(client, store="s2")
    used = await spend_code(client)
    r = await client.post(
        f"{C}/redemptions",
        json={"id": "r-used", "store": "s1", "member": "m0", "items": [{"sku": "soap", "qty": 1}]},
    )
    assert r.status_code == 201
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE spend_codes SET expires_at = now() - interval '1 second' WHERE code_hash = $1",
            hashlib.sha256(expired.encode()).digest(),
        )
        await conn.execute(
            "UPDATE spend_codes SET used_by = 'r-used', used_at = now() WHERE code_hash = $1",
            hashlib.sha256(used.encode()).digest(),
        )
    finally:
        await conn.close()
    before = await state(client)
    answers = []
    for code in ("Zm9vYmFyYmF6cXV4cXV1eA", expired, other_store, used, "x" * 200):
        r = await find(browser_client, csrf, code)
        answers.append((r.status_code, r.text))
    assert answers[0][0] == 403 and "请居民重新出示消费码" in answers[0][1]
    assert all(a == answers[0] for a in answers), "the answers tell the codes apart"
    assert await state(client) == before
    # Failed look-ups count like failed sign-ins: 30 a minute from one address.
    statuses = [(await find(browser_client, csrf, f"guess-{i}")).status_code for i in range(30)]
    assert statuses[-1] == 429 and set(statuses) <= {403, 429}
    last = await find(browser_client, csrf, other_store)
    assert last.status_code == 429 and "尝试次数太多" in last.text


async def test_only_a_store_key_opens_the_till_and_only_its_own_receipts(
    client: Client, browser_client: Client
) -> None:
    await shop(client)
    r = await browser_client.get("/app/till")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
    sale = {"id": "r1", "store": "s1", "member": "m0", "items": [{"sku": "soap", "qty": 1}]}
    assert (await client.post(f"{C}/redemptions", json=sale)).status_code == 201

    operator = await _key(client, "operator")
    assert await sign_in_with_key(browser_client, operator) == "/app/office"
    assert (await browser_client.get("/app/till")).status_code == 403
    assert (await browser_client.get("/app/till/receipts/r1")).status_code == 403

    r = await client.post(f"{C}/members/m0/sign-in-links", json={})
    assert r.status_code == 201, r.text
    browser_client.cookies.clear()
    assert await sign_in_with_link(browser_client, r.json()["url"]) == "/app/me"
    assert (await browser_client.get("/app/till")).status_code == 403
    assert (await browser_client.get("/app/till/today")).status_code == 403

    # Another store of the community: s1's receipt does not exist for it.
    browser_client.cookies.clear()
    csrf = await till(client, browser_client, store="s2")
    assert (await browser_client.get("/app/till/receipts/r1")).status_code == 404
    r = await browser_client.post(
        "/app/till/receipts/r1/return",
        data={"csrf": csrf, "op_id": "back-x", "qty.soap": "1"},
        headers=SAME,
    )
    assert r.status_code == 404
    today = await browser_client.get("/app/till/today")
    assert "/app/till/receipts/r1" not in today.text
    assert (await client.get(f"{C}/redemptions/r1")).json()["returned_points"] == 0

    # A store key of another community.
    r = await client.post("/v1/communities", json={"id": "blue", "name": "Blue Court"})
    assert r.status_code == 201, r.text
    browser_client.cookies.clear()
    blue = await _key(client, "store", "blue", store="s1")
    assert await sign_in_with_key(browser_client, blue) == "/app/till"
    assert (await browser_client.get("/app/till/receipts/r1")).status_code == 404
    code = await spend_code(client)
    csrf = csrf_of((await browser_client.get("/app/till")).text)
    r = await find(browser_client, csrf, code)
    assert r.status_code == 403 and "请居民重新出示消费码" in r.text
