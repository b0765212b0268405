"""The resident's pages over HTTP: the numbers are the API's, the statement says
why, a spend code works once at the till and never travels in a URL, mandates,
proxies (`?for=`) and the time bank; other roles and strangers are refused, and a
refused form changes nothing."""

from __future__ import annotations

import html
import re
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.api.test_rules import SCHEME, event, publish
from tests.api.test_volunteer_hours import log_body, volunteer_app
from tests.helpers import C, award, balance, bearer, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}
CODE = re.compile(r'data-testid="code">([^<]+)<')


def stat(page: str, name: str) -> int:
    """The number a balance page shows in its `data-testid=name` box."""
    found = re.search(rf'data-testid="{name}">.*?class="value">([^<]+)<', page, re.S)
    assert found, f"no {name} on the page"
    return int(found.group(1).replace(",", ""))


async def signed_in(client: Client, browser: Client, member: str = "m0") -> str:
    """`browser` signed in with a one-time link of `member`; the home page's CSRF token."""
    r = await client.post(f"{C}/members/{member}/sign-in-links", json={})
    assert r.status_code == 201, r.text
    assert await sign_in_with_link(browser, r.json()["url"]) == "/app/me"
    return csrf_of((await browser.get("/app/me")).text)


async def scheme(client: Client) -> None:
    """Green, the example rule set, m0 with +50 (a plain award), +20 (fee on time)
    and −10 (飞线充电, rule flying-lead, event e-fly)."""
    await community(client)
    await publish(client, SCHEME)
    await award(client, "gift-1", "m0", 50)
    r = await client.post(f"{C}/events", json=event("e-fee", "fee.paid", days_late=0))
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{C}/events", json=event("e-fly", "compact.violation", kind="flying_lead_charging")
    )
    assert r.status_code == 201, r.text


async def _count(dsn: str, table: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # a fixed table name
        return n
    finally:
        await conn.close()


async def test_the_balance_is_the_apis(client: Client, browser_client: Client) -> None:
    await scheme(client)
    await signed_in(client, browser_client)
    r = await browser_client.get("/app/me")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    api = await balance(client, "m0")
    page = r.text
    assert stat(page, "redeemable") == api["points"]["redeemable"] == 60
    assert stat(page, "score") == api["points"]["score"] == 160
    assert stat(page, "baseline") == api["points"]["baseline"] == 100
    assert stat(page, "held") == api["points"]["held"] == 0
    assert stat(page, "minutes") == api["minutes"]["balance"] == 0
    # What expires next: amount and date, as the API's `expiring` says.
    expiring = api["points"]["expiring"]
    assert expiring and f"{expiring[0]['amount']} 积分将于" in page
    assert 'aria-current="page"' in page and "明细" in page and "时间银行" in page
    en = (await browser_client.get("/app/me?lang=en")).text
    assert "Points you can spend" in en and "Statement" in en


async def test_the_statement_says_why_and_pages(client: Client, browser_client: Client) -> None:
    await scheme(client)
    for i in range(20):
        await award(client, f"small-{i:02d}", "m0", 1)
    await signed_in(client, browser_client)
    first = (await browser_client.get("/app/me/statement")).text
    assert first.count('class="entry card"') == 20 and "飞线充电" not in first
    api = (await client.get(f"{C}/members/m0/statement", params={"limit": 20})).json()
    cursor = api["next_cursor"]
    assert cursor and html.escape(cursor) in first and "更多" in first
    older = (await browser_client.get(f"/app/me/statement?cursor={cursor}")).text
    # The deduction, newest of the rules' entries: its amount with a sign (not only a
    # colour), reason, rule, event, running balance and who acted.
    entry = older.split('class="entry card"')[1]
    assert "−10" in entry and "飞线充电" in entry and "flying-lead" in entry and "e-fly" in entry
    assert "env-admin" in entry and "160" in older
    minutes = await browser_client.get("/app/me/statement?asset=minutes")
    assert minutes.status_code == 200 and "还没有任何记录" in minutes.text


async def test_a_spend_code_is_shown_once_and_works_at_the_till(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await scheme(client)
    csrf = await signed_in(client, browser_client)
    form = await browser_client.get("/app/me/spend-code")
    assert form.status_code == 200 and 'name="max_points"' in form.text
    # Refused: nothing issued.
    bad = await browser_client.post(
        "/app/me/spend-code", data={"csrf": csrf, "max_points": "0"}, headers=SAME
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    assert await _count(dsn, "spend_codes") == 0
    r = await browser_client.post(
        "/app/me/spend-code", data={"csrf": csrf, "max_points": "20", "store": "s1"}, headers=SAME
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "<svg" in r.text and "data-countdown=" in r.text
    found = CODE.search(r.text)
    assert found
    code = found.group(1)
    assert "location" not in r.headers and code not in str(r.url)
    # The till takes it (a store key's redemption with the code as consent).
    store = await client.post(
        "/v1/api-keys", json={"role": "store", "community": "green", "store": "s1"}
    )
    till = bearer(store.json()["key"])
    item = {"name": "soap", "points": 15, "stock": 5}
    assert (
        await client.put(f"{C}/stores/s1/items/soap", json=item, headers=till)
    ).status_code == 201
    body = {
        "id": "r1",
        "store": "s1",
        "member": "m0",
        "items": [{"sku": "soap", "qty": 1}],
        "consent": {"spend_code": code},
    }
    redeemed = await client.post(f"{C}/redemptions", json=body, headers=till)
    assert redeemed.status_code == 201, redeemed.text
    page = (await browser_client.get("/app/me")).text
    assert stat(page, "redeemable") == (await balance(client, "m0"))["points"]["redeemable"] == 45


async def test_mandates_grant_list_and_revoke(client: Client, browser_client: Client) -> None:
    await scheme(client)
    csrf = await signed_in(client, browser_client)
    page = (await browser_client.get("/app/me/mandates")).text
    assert 'value="acme"' in page and "目前没有有效的授权" in page
    bad = await browser_client.post(
        "/app/me/mandates", data={"csrf": csrf, "company": "acme", "per_bill": "x"}, headers=SAME
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    listed = await client.get(f"{C}/members/m0/mandates")
    assert listed.json()["mandates"] == []
    r = await browser_client.post(
        "/app/me/mandates",
        data={"csrf": csrf, "company": "acme", "per_bill": "30", "per_year": "200"},
        headers=SAME,
    )
    assert (r.status_code, r.headers["location"]) == (303, "/app/me/mandates?done=granted")
    mandate = (await client.get(f"{C}/members/m0/mandates")).json()["mandates"][0]
    assert (mandate["max_points_per_bill"], mandate["max_points_per_year"]) == (30, 200)
    page = (await browser_client.get(r.headers["location"])).text
    assert "已保存" in page and "<code>acme</code>" in page and ">200<" in page
    r = await browser_client.post("/app/me/mandates/acme/revoke", data={"csrf": csrf}, headers=SAME)
    assert r.status_code == 303
    assert (await client.get(f"{C}/members/m0/mandates")).json()["mandates"] == []
    again = await browser_client.post(
        "/app/me/mandates/acme/revoke", data={"csrf": csrf}, headers=SAME
    )
    assert again.status_code == 404 and 'role="alert"' in again.text


async def test_proxies_and_acting_for_another_member(
    client: Client, browser_client: Client
) -> None:
    await scheme(client)
    csrf = await signed_in(client, browser_client, "m0")
    r = await browser_client.post(
        "/app/me/proxies", data={"csrf": csrf, "proxy": "m0", "scopes": "read"}, headers=SAME
    )
    assert r.status_code == 422  # not one's own proxy
    r = await browser_client.post(
        "/app/me/proxies",
        data={"csrf": csrf, "proxy": "m1", "scopes": ["read", "spend"]},
        headers=SAME,
    )
    assert r.status_code == 303, r.text
    granted = (await client.get(f"{C}/members/m0/proxies")).json()["proxies"]
    assert [(g["proxy"], g["scopes"]) for g in granted] == [("m1", ["read", "spend"])]

    browser_client.cookies.clear()
    csrf1 = await signed_in(client, browser_client, "m1")
    home = (await browser_client.get("/app/me")).text
    assert "/app/me?for=m0" in home  # whom m1 acts for
    theirs = await browser_client.get("/app/me?for=m0")
    assert theirs.status_code == 200 and "您正在代 m0 办理" in theirs.text
    assert stat(theirs.text, "redeemable") == 60
    assert 'href="/app/me/statement?for=m0"' in theirs.text
    # A spend code for m0 (the spend scope); the API records m1's session as actor.
    r = await browser_client.post(
        "/app/me/spend-code?for=m0", data={"csrf": csrf1, "max_points": "5"}, headers=SAME
    )
    assert r.status_code == 200 and CODE.search(r.text)
    # No time scope: m0's minutes are not m1's to give (403, nothing written).
    r = await browser_client.post(
        "/app/me/time/give?for=m0",
        data={"csrf": csrf1, "op_id": "gift-x", "to_member": "m1", "minutes": "1"},
        headers=SAME,
    )
    assert r.status_code == 403
    assert (await client.get(f"{C}/transactions/gift-x")).status_code == 404
    # A proxy does not manage the member's proxies.
    r = await browser_client.post(
        "/app/me/proxies/m1/revoke?for=m0", data={"csrf": csrf1}, headers=SAME
    )
    assert r.status_code == 403
    assert len((await client.get(f"{C}/members/m0/proxies")).json()["proxies"]) == 1
    # m0 is no proxy of m1: m1 cannot be read "for" by a stranger (404, as in the API).
    browser_client.cookies.clear()
    await signed_in(client, browser_client, "m0")
    assert (await browser_client.get("/app/me?for=m1")).status_code == 404
    assert (await browser_client.get("/app/me/statement?for=nobody")).status_code == 404
    r = await browser_client.post("/app/me/proxies/m1/revoke", data={"csrf": csrf1}, headers=SAME)
    assert r.status_code == 403  # the token of another session


async def test_the_time_bank(client: Client, browser_client: Client) -> None:
    await scheme(client)
    app = await volunteer_app(client)
    for ident, minutes in (("vh1", 90), ("vh2", 30)):
        r = await client.post(
            f"{C}/volunteer-hours", json=log_body(ident, minutes=minutes), headers=app
        )
        assert r.status_code == 201, r.text
    assert (await client.post(f"{C}/volunteer-hours/vh1/approve")).status_code == 200
    csrf = await signed_in(client, browser_client)
    page = (await browser_client.get("/app/me/time")).text
    assert stat(page, "minutes") == 90 and "已通过" in page and "待审核" in page
    assert "elderly visits" in page and "1/1" in page and "0/1" in page
    op_id = re.search(r'name="op_id" value="([^"]+)"', page)
    assert op_id
    too_many = await browser_client.post(
        "/app/me/time/give",
        data={"csrf": csrf, "op_id": op_id.group(1), "to_member": "m1", "minutes": "91"},
        headers=SAME,
    )
    assert too_many.status_code == 409 and "分钟）不够" in too_many.text
    assert (await balance(client, "m0"))["minutes"]["balance"] == 90
    gift = {"csrf": csrf, "op_id": op_id.group(1), "to_member": "m1", "minutes": "30"}
    for _ in range(2):  # a double submit is a replay
        r = await browser_client.post("/app/me/time/give", data=gift, headers=SAME)
        assert (r.status_code, r.headers["location"]) == (303, "/app/me/time?done=given")
    assert (await balance(client, "m0"))["minutes"]["balance"] == 60
    assert (await balance(client, "m1"))["minutes"]["balance"] == 30
    page = (await browser_client.get("/app/me/time?done=given")).text
    assert "已赠送" in page and "时间赠送" in page and "member:m1:minutes" in page


async def test_only_residents_and_each_only_itself(client: Client, browser_client: Client) -> None:
    await scheme(client)
    r = await browser_client.get("/app/me")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
    operator = await client.post("/v1/api-keys", json={"role": "operator", "community": "green"})
    await sign_in_with_key(browser_client, operator.json()["key"])
    for path in ("/app/me", "/app/me/statement", "/app/me/spend-code", "/app/me/time"):
        assert (await browser_client.get(path)).status_code == 403, path
    # A resident key's session is a resident's: the same pages, its own member only.
    browser_client.cookies.clear()
    key = await client.post(
        "/v1/api-keys", json={"role": "resident", "community": "green", "member": "m1"}
    )
    assert await sign_in_with_key(browser_client, key.json()["key"]) == "/app/me"
    page = (await browser_client.get("/app/me")).text
    assert stat(page, "redeemable") == (await balance(client, "m1"))["points"]["redeemable"]
    assert (await browser_client.get("/app/me?for=m0")).status_code == 404
    # Another community's member ids mean nothing here.
    assert (
        await client.post("/v1/communities", json={"id": "blue", "name": "B"})
    ).status_code == 201
    assert (await browser_client.get("/app/me/mandates?for=m0")).status_code == 404
