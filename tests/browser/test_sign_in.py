"""Signing in in a real browser: a staff key pasted once, a resident's one-time link
(its token travels after '#', so only the page's script sees it), signing out."""

from __future__ import annotations

import httpx

from tests.browser.conftest import DESKTOP, Pages, Shots, both_sizes

C = "/v1/communities/green"


async def _community(api: httpx.AsyncClient) -> None:
    for path, body in (
        ("/v1/communities", {"id": "green", "name": "绿苑小区"}),
        (f"{C}/households", {"id": "h1", "property_company": "acme"}),
        (f"{C}/members", {"id": "m1", "household": "h1", "name": "李伟"}),
    ):
        r = await api.post(path, json=body)
        assert r.status_code == 201, r.text


async def test_staff_paste_a_key_once_and_sign_out(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    await _community(api)
    r = await api.post("/v1/api-keys", json={"role": "operator", "community": "green"})
    key = r.json()["key"]
    page = await pages.person(DESKTOP)
    await both_sizes(page, "/app/sign-in")
    await page.set_viewport_size(DESKTOP)
    await shots.take(page, "sign-in")
    await page.get_by_label("密钥").fill("plk_0123456789abcdef_wrong")
    await page.get_by_role("button", name="登录").click()
    await page.get_by_role("alert").wait_for()
    assert "无效" in await page.get_by_role("alert").inner_text()
    await page.get_by_label("密钥").fill(key)
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/app/office")
    assert key not in await page.content()
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "ledger_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    await page.goto("/app/welcome")
    await page.get_by_role("button", name="退出登录").click()
    await page.wait_for_url("**/app/sign-in")
    await page.goto("/app/welcome")
    await page.wait_for_url("**/app/sign-in")


async def test_a_resident_opens_a_link_once(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    await _community(api)
    r = await api.post(f"{C}/members/m1/sign-in-links", json={})
    url = r.json()["url"]
    phone = await pages.person()
    await phone.goto(url)
    await phone.wait_for_url("**/app/me")
    assert "#" not in phone.url
    # The same link on another phone: used up, said in words, nothing signed in.
    other = await pages.person()
    await other.goto(url)
    await other.get_by_role("alert").wait_for()
    assert "已使用" in await other.get_by_role("alert").inner_text()
    await shots.take(other, "sign-in-link-used")
    await both_sizes(other, "/app/in")
    await other.goto("/app/sign-in?lang=en")
    assert await other.get_by_role("heading", name="Sign in").is_visible()
