"""A resident in a real browser (issue 17's path): opens the sign-in link the office
issued, sees the balance the API reports, finds why 10 points went in the statement,
shows a spend code (a QR code whose countdown ticks) that the till then uses; and
every resident page loads at both sizes with no console error."""

from __future__ import annotations

import re

import httpx

from tests.api.test_volunteer_hours import log_body, volunteer_app
from tests.browser.conftest import DESKTOP, PHONE, Pages, Shots, both_sizes
from tests.helpers import C, bearer
from tests.web.test_resident_pages import scheme

PAGES = {
    "balance": "/app/me",
    "statement": "/app/me/statement",
    "spend-code-form": "/app/me/spend-code",
    "mandates": "/app/me/mandates",
    "proxies": "/app/me/proxies",
    "time": "/app/me/time",
}


async def test_a_resident_signs_in_reads_why_and_spends(
    app_url: str, api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    await scheme(api)  # +50, +20 (fee on time), −10 (飞线充电) on a baseline of 100
    r = await api.put(f"{C}/members/m0/proxies/m1", json={"scopes": ["read"]})
    assert r.status_code == 200, r.text
    r = await api.post(f"{C}/members/m0/sign-in-links", json={})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    page = await pages.person(PHONE)

    await page.goto(url)
    await page.wait_for_url(f"{app_url}/app/me")
    assert "#" not in page.url  # the link's token left the address bar
    api_balance = (await api.get(f"{C}/members/m0/balance")).json()["points"]
    redeemable = page.get_by_test_id("redeemable").locator(".value")
    assert await redeemable.inner_text() == str(api_balance["redeemable"]) == "60"
    assert await page.get_by_test_id("score").locator(".value").inner_text() == "160"
    await shots.take(page, "resident-balance")

    await page.get_by_role("link", name="明细", exact=True).click()
    await page.wait_for_url("**/app/me/statement")
    deduction = page.locator(".entry").filter(has_text="飞线充电")
    assert await deduction.count() == 1
    text = await deduction.inner_text()
    assert "−10" in text and "flying-lead" in text and "e-fly" in text
    await shots.take(page, "resident-statement")

    await page.get_by_role("link", name="消费码", exact=True).click()
    await page.get_by_label("最多可用积分").fill("20")
    await page.get_by_role("button", name="生成消费码").click()
    qr = page.locator(".qr svg")
    await qr.wait_for(state="visible")
    assert "spend-code" in page.url and "code=" not in page.url
    countdown = page.locator("[data-countdown]")
    before = await countdown.inner_text()
    await page.wait_for_function(
        "before => document.querySelector('[data-countdown]').textContent !== before", arg=before
    )
    assert re.fullmatch(r"\d+:\d\d", await countdown.inner_text())
    code = (await page.get_by_test_id("code").inner_text()).strip()
    await shots.take(page, "resident-spend-code")

    # The till types the code the phone shows: a redemption with it is accepted.
    key = await api.post(
        "/v1/api-keys", json={"role": "store", "community": "green", "store": "s1"}
    )
    till = bearer(key.json()["key"])
    item = {"name": "肥皂", "points": 15, "stock": 3}
    assert (await api.put(f"{C}/stores/s1/items/soap", json=item, headers=till)).status_code == 201
    redemption = {
        "id": "r1",
        "store": "s1",
        "member": "m0",
        "items": [{"sku": "soap", "qty": 1}],
        "consent": {"spend_code": code},
    }
    r = await api.post(f"{C}/redemptions", json=redemption, headers=till)
    assert r.status_code == 201, r.text

    # Something on every page: a mandate, hours (one approved, one waiting), a gift.
    r = await api.put(
        f"{C}/members/m0/mandates/acme",
        json={"max_points_per_bill": 30, "max_points_per_year": 300},
    )
    assert r.status_code == 200, r.text
    app = await volunteer_app(api)
    for ident, minutes in (("vh1", 90), ("vh2", 30)):
        body = log_body(ident, minutes=minutes)
        assert (await api.post(f"{C}/volunteer-hours", json=body, headers=app)).status_code == 201
    assert (await api.post(f"{C}/volunteer-hours/vh1/approve")).status_code == 200
    gift = {"id": "g1", "from_member": "m0", "to_member": "m1", "minutes": 15, "memo": "谢谢帮忙"}
    assert (await api.post(f"{C}/time-transfers", json=gift)).status_code == 201

    for name, path in PAGES.items():
        await both_sizes(page, path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is wider than the phone: {width}px"
        await shots.take(page, f"resident-{name}")
        await page.set_viewport_size(DESKTOP)
        await shots.take(page, f"resident-{name}-desktop")
    await page.goto("/app/me")
    # What the till took, and the points the approved hours earned (90 / 6).
    assert await redeemable.inner_text() == "60"
