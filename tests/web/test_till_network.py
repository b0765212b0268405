"""The till of a district-wide store serving a resident of another community of the
district (SPEC sections 14 and 16), over HTTP: the code issued in the member's own
community finds them, the basket names their community, the sale and its return
write both communities' sides; a code of a community outside the district, or a
till of a store that serves its own community only, answers as for an unknown code;
a refusal between the look-up and the sale is in the volunteer's words."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

from tests.helpers import balance
from tests.network_helpers import BLUE, D1, GREEN, account, spend_code, two_communities
from tests.web.conftest import csrf_of, sign_in_with_key

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}
OP_ID = re.compile(r'name="op_id" value="([^"]+)"')
UNUSABLE = "请居民重新出示消费码"


async def blue_till(client: Client, browser: Client, store: str = "s1") -> str:
    """Signs the browser in with a store key of community blue; the page's csrf token."""
    r = await client.post(
        "/v1/api-keys", json={"role": "store", "community": "blue", "store": store}
    )
    assert r.status_code == 201, r.text
    assert await sign_in_with_key(browser, r.json()["key"]) == "/app/till"
    page = await browser.get("/app/till")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def find(browser: Client, csrf: str, code: str, query: str = "") -> Any:
    return await browser.post(
        f"/app/till/code{query}", data={"csrf": csrf, "code": code}, headers=SAME
    )


def form_of(page: str) -> dict[str, str]:
    """The basket form's hidden fields, as the page rendered them."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    assert "op_id" in fields and "member" in fields, "the basket form is incomplete"
    return fields


async def sell(browser: Client, fields: dict[str, str], **qty: int) -> Any:
    """Sends the basket form as the page does, with these quantities."""
    data = dict(fields) | {f"qty.{k}": str(v) for k, v in qty.items()}
    return await browser.post("/app/till/sale", data=data, headers=SAME)


async def sides(client: Client) -> tuple[int, int, int, int, dict[str, int]]:
    """m0's redeemable points (green), both interchange accounts, blue's store
    account and blue s1's stock by sku."""
    items = (await client.get(f"{BLUE}/stores/s1/items")).json()["items"]
    return (
        (await balance(client, "m0"))["points"]["redeemable"],
        await account(client, GREEN, "interchange:blue:points"),
        await account(client, BLUE, "interchange:green:points"),
        await account(client, BLUE, "store:s1:redemptions"),
        {i["sku"]: i["stock"] for i in items},
    )


async def test_a_resident_of_another_community_buys_and_returns_at_a_district_wide_till(
    client: Client, browser_client: Client
) -> None:
    await two_communities(client)
    csrf = await blue_till(client, browser_client)
    code = await spend_code(client, GREEN, "m0", 50)
    before = await sides(client)
    assert before == (100, 0, 0, 0, {"oil": 10, "soap": 10})

    r = await find(browser_client, csrf, code)
    assert r.status_code == 200, r.text
    assert "居民：m0 · Green Court" in r.text and "最多可用 50 积分" in r.text
    fields = form_of(r.text)
    assert (fields["member"], fields["member_community"], fields["code"]) == ("m0", "green", code)
    assert await sides(client) == before  # the look-up used nothing up
    english = await find(browser_client, csrf, code, "?lang=en")
    assert "Resident: m0 · Green Court" in english.text

    r = await sell(browser_client, fields, soap=2, oil=1)
    assert r.status_code == 303, r.text
    op = fields["op_id"]
    assert r.headers["location"] == f"/app/till/receipts/{op}"
    # One change on both sides: the member paid in green, the store was paid in blue.
    assert await sides(client) == (70, 30, -30, 30, {"oil": 9, "soap": 8})
    made = (await client.get(f"{BLUE}/redemptions/{op}")).json()
    assert (made["member"], made["member_community"], made["points"]) == ("m0", "green", 30)
    # A double tap is a replay, not a second sale; the code is used up.
    again = await sell(browser_client, fields, soap=2, oil=1)
    assert (again.status_code, again.headers["location"]) == (303, f"/app/till/receipts/{op}")
    assert await sides(client) == (70, 30, -30, 30, {"oil": 9, "soap": 8})
    used = await find(browser_client, csrf, code)
    assert used.status_code == 403 and UNUSABLE in used.text

    receipt = (await browser_client.get(f"/app/till/receipts/{op}")).text
    assert 'id="receipt-member">m0 · Green Court<' in receipt
    assert 'id="receipt-total">30<' in receipt and code not in receipt
    back_op = OP_ID.search(receipt)
    assert back_op is not None
    back = {"csrf": csrf, "op_id": back_op.group(1), "qty.oil": "1"}
    r = await browser_client.post(f"/app/till/receipts/{op}/return", data=back, headers=SAME)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/app/till/receipts/{op}?done=return"
    # The return undid both sides of the oil; the same form again is a replay.
    assert await sides(client) == (90, 10, -10, 10, {"oil": 10, "soap": 8})
    r = await browser_client.post(f"/app/till/receipts/{op}/return", data=back, headers=SAME)
    assert r.status_code == 303 and await sides(client) == (90, 10, -10, 10, {"oil": 10, "soap": 8})
    shown = (await browser_client.get(f"/app/till/receipts/{op}?done=return")).text
    assert "退货完成" in shown and 'id="receipt-returned">20<' in shown
    assert 'id="receipt-net">10<' in shown

    today = (await browser_client.get("/app/till/today")).text
    assert f'href="/app/till/receipts/{op}"' in today
    assert today.count("<td>m0 · Green Court</td>") == 2  # the sale and its return
    assert 'id="today-sold">30<' in today and 'id="today-returned">20<' in today
    assert (await client.get(f"{D1}/audit/verify")).json()["ok"] is True


async def test_a_code_from_outside_the_district_is_refused_like_an_unknown_code(
    client: Client, browser_client: Client
) -> None:
    await two_communities(client)
    # Red: a community of no district, with a member and a code of their own.
    r = await client.post("/v1/communities", json={"id": "red", "name": "Red Court"})
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/communities/red/households", json={"id": "h0", "property_company": "acme"}
    )
    assert r.status_code == 201, r.text
    r = await client.post("/v1/communities/red/members", json={"id": "r0", "household": "h0"})
    assert r.status_code == 201, r.text
    red = await spend_code(client, "/v1/communities/red", "r0", 50)
    # A code of green for green's own store s1 only: store ids are per community.
    r = await client.post(f"{GREEN}/members/m0/spend-codes", json={"max_points": 50, "store": "s1"})
    assert r.status_code == 201, r.text
    for_green_s1 = r.json()["code"]
    csrf = await blue_till(client, browser_client)
    before = await sides(client)

    answers = []
    for code in ("Zm9vYmFyYmF6cXV4cXV1eA", red, for_green_s1):
        r = await find(browser_client, csrf, code)
        answers.append((r.status_code, r.text))
    assert answers[0][0] == 403 and UNUSABLE in answers[0][1]
    assert all(a == answers[0] for a in answers), "the answers tell the codes apart"
    # Nor does a sale for red's member go through with its code.
    fields = {"csrf": csrf, "code": red, "op_id": "till-red", "member": "r0"}
    r = await sell(browser_client, fields | {"member_community": "red"}, soap=1)
    assert r.status_code == 403 and "本店不能为这位居民兑换" in r.text
    assert (await client.get(f"{BLUE}/redemptions/till-red")).status_code == 404
    assert await sides(client) == before
    # Look-ups missed in every community count once each, as failed sign-ins do.
    statuses = [(await find(browser_client, csrf, f"guess-{i}")).status_code for i in range(30)]
    assert statuses[-1] == 429 and set(statuses) <= {403, 429}


async def test_a_store_serving_its_own_community_does_not_find_other_communities_codes(
    client: Client, browser_client: Client
) -> None:
    await two_communities(client)
    r = await client.put(f"{BLUE}/stores/s2", json={"name": "Corner", "district_wide": False})
    assert r.status_code == 201, r.text
    # s3 is known only by its catalogue: it serves its own community too.
    r = await client.put(
        f"{BLUE}/stores/s3/items/soap", json={"name": "Soap", "points": 5, "stock": 10}
    )
    assert r.status_code == 201, r.text
    code = await spend_code(client, GREEN, "m0", 50)
    before = await sides(client)
    for store in ("s2", "s3"):
        browser_client.cookies.clear()
        csrf = await blue_till(client, browser_client, store)
        unknown = await find(browser_client, csrf, "Zm9vYmFyYmF6cXV4cXV1eA")
        r = await find(browser_client, csrf, code)
        assert r.status_code == 403 and UNUSABLE in r.text
        assert (r.status_code, r.text) == (unknown.status_code, unknown.text), store
    # Blue's own residents are served there as before.
    b0 = await spend_code(client, BLUE, "b0", 50)
    r = await find(browser_client, csrf, b0)
    assert r.status_code == 200 and "居民：b0<" in r.text and "member_community" not in r.text
    # The code was refused, not used: the district-wide store s1 takes it.
    browser_client.cookies.clear()
    csrf = await blue_till(client, browser_client)
    r = await find(browser_client, csrf, code)
    assert r.status_code == 200 and "居民：m0 · Green Court" in r.text
    assert await sides(client) == before


async def test_a_store_that_stops_serving_the_district_refuses_in_the_volunteers_words(
    client: Client, browser_client: Client
) -> None:
    await two_communities(client)
    csrf = await blue_till(client, browser_client)
    code = await spend_code(client, GREEN, "m0", 50)
    fields = form_of((await find(browser_client, csrf, code)).text)
    before = await sides(client)
    # The office makes s1 serve blue only between the look-up and the sale.
    r = await client.put(f"{BLUE}/stores/s1", json={"name": "Love", "district_wide": False})
    assert r.status_code == 200, r.text
    r = await sell(browser_client, fields, soap=1)
    assert r.status_code == 403 and "本店不能为这位居民兑换" in r.text, r.text
    assert "请居民到自己社区的爱心超市兑换" in r.text
    assert 'name="qty.soap" value="1"' in r.text  # the basket is kept for the scan page
    english = await browser_client.post(
        "/app/till/sale?lang=en", data=fields | {"qty.soap": "1"}, headers=SAME
    )
    assert english.status_code == 403
    assert "This store cannot serve this resident" in english.text
    assert "love supermarket; if this store should serve the whole district" in english.text
    assert await sides(client) == before
    assert (await client.get(f"{BLUE}/redemptions/{fields['op_id']}")).status_code == 404
    # Serving the district again, the same code and form go through.
    r = await client.put(f"{BLUE}/stores/s1", json={"name": "Love", "district_wide": True})
    assert r.status_code == 200, r.text
    r = await sell(browser_client, fields, soap=1)
    assert r.status_code == 303, r.text
    assert await sides(client) == (95, 5, -5, 5, {"oil": 10, "soap": 9})
