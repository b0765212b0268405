"""A love-supermarket afternoon with the demo, in four browsers at once: the links
`serve --demo` prints, a resident's spend code taken by the till from her phone,
a sale and a return that the resident's own pages then show, and an organiser's
approval that the volunteer sees as minutes and points."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import expect

from service.demo import seed_demo
from tests.browser.conftest import DESKTOP, Pages

SCHEME = Path(__file__).resolve().parents[2] / "docs" / "examples" / "scheme.yaml"
B = "/v1/communities/demo"


async def test_an_afternoon_at_the_love_supermarket(
    dsn: str, app_url: str, api: httpx.AsyncClient, pages: Pages
) -> None:
    links = {link.who.split()[0]: link.url for link in await seed_demo(dsn, app_url)}
    r = await api.put(
        f"{B}/rules", content=SCHEME.read_bytes(), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text

    # Li Wei (m-1) opens his link on his phone and shows a spend code.
    li = await pages.person()
    await li.goto(links["m-1"])
    await li.wait_for_url("**/app/me")
    assert await li.get_by_test_id("redeemable").locator(".value").inner_text() == "30"
    await li.get_by_role("link", name="消费码", exact=True).click()
    await li.get_by_label("最多可用积分").fill("20")
    await li.get_by_role("button", name="生成消费码").click()
    code = (await li.get_by_test_id("code").inner_text()).strip()

    # The volunteer's tablet: the till link, the code from Li's screen, rice and soap.
    till = await pages.person(DESKTOP)
    till.on("dialog", lambda dialog: dialog.accept())  # "return these?"
    await till.goto(links["till"])
    await till.wait_for_url("**/app/till")
    await till.fill("#code", code)
    await till.click("#code-form button[type=submit]")
    await till.click("button[data-for='qty-rice'][data-step='1']")
    await till.click("button[data-for='qty-soap'][data-step='1']")
    assert await till.locator("#basket-total").inner_text() == "15"
    await till.click("#basket-form button[type=submit]")
    await till.locator("#receipt-total").wait_for()
    assert await till.locator("#receipt-total").inner_text() == "15"
    # The soap comes back.
    await till.fill("#back-soap", "1")
    await till.click("form[action$='/return'] button[type=submit]")
    await till.wait_for_url("**?done=return")
    await expect(till.locator("#receipt-returned")).to_have_text("5")

    # Li's phone shows both: 30 − 15 + 5 = 20, and the statement says why.
    await li.goto("/app/me")
    assert await li.get_by_test_id("redeemable").locator(".value").inner_text() == "20"
    await li.get_by_role("link", name="明细", exact=True).click()
    statement = await li.locator("main").inner_text()
    assert "爱心超市兑换" in statement and "爱心超市退货" in statement

    # The organiser approves Wang Fang's two hours with the elderly.
    organiser = await pages.person(DESKTOP)
    await organiser.goto(links["organiser"])
    await organiser.wait_for_url("**/app/hours")
    await organiser.locator("#row-demo-hours-1").get_by_role("button", name="批准").click()
    await organiser.locator('#row-demo-hours-1 [data-outcome="approved"]').wait_for()

    # Wang Fang (m-2) sees the 120 minutes, and the scheme's 120 / 6 = 20 points.
    wang = await pages.person()
    await wang.goto(links["m-2"])
    await wang.wait_for_url("**/app/me")
    balance = (await api.get(f"{B}/members/m-2/balance")).json()
    assert balance["minutes"]["balance"] == 120 and balance["points"]["score"] == 135
    assert await wang.get_by_test_id("score").locator(".value").inner_text() == "135"
    await wang.get_by_role("link", name="时间银行", exact=True).click()
    assert "120" in await wang.get_by_test_id("minutes").inner_text()
