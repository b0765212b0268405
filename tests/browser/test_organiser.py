"""An organiser's afternoon in a real browser (issue 17): hours logged by a volunteer
app wait in the queue; the organiser approves one with its row's button (htmx
updates the row in place) and two more ticked at once; the member's balance, read
through the API, shows the minutes and the points the rule set awards."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page

from tests.api.test_rules import SCHEME
from tests.browser.conftest import DESKTOP, PHONE, Pages, Shots, both_sizes

C = "/v1/communities/green"


async def _community(api: httpx.AsyncClient) -> dict[str, str]:
    """Green Court under the example scheme (volunteer-points: minutes / 6), one
    resident, and a volunteer app's key; returns that key's Authorization header."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/communities", {"id": "green", "name": "绿苑小区"}),
        (f"{C}/households", {"id": "h1", "property_company": "acme", "address": "3-2-101"}),
        (f"{C}/members", {"id": "m1", "household": "h1", "name": "李伟"}),
    ]
    for path, body in calls:
        r = await api.post(path, json=body)
        assert r.status_code == 201, r.text
    r = await api.put(
        f"{C}/rules", content=SCHEME.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    r = await api.post("/v1/api-keys", json={"role": "volunteer_app", "community": "green"})
    return {"Authorization": f"Bearer {r.json()['key']}"}


async def _log(api: httpx.AsyncClient, app: dict[str, str], hours_id: str, minutes: int) -> None:
    body = {
        "id": hours_id,
        "member": "m1",
        "activity": "陪老人聊天" if hours_id == "vh1" else "社区清洁",
        "started_at": "2026-11-28T09:00:00+08:00",
        "minutes": minutes,
        "team": "elders",
    }
    r = await api.post(f"{C}/volunteer-hours", json=body, headers=app)
    assert r.status_code == 201, r.text


async def _sign_in(api: httpx.AsyncClient, page: Page) -> None:
    r = await api.post(
        "/v1/api-keys", json={"role": "organiser", "community": "green", "teams": ["elders"]}
    )
    await page.goto("/app/sign-in")
    await page.get_by_label("密钥").fill(r.json()["key"])
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/app/hours")
    await page.wait_for_load_state("networkidle")


async def test_an_organiser_approves_one_and_then_several(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    app = await _community(api)
    for hours_id, minutes in (("vh1", 90), ("vh2", 60), ("vh3", 30)):
        await _log(api, app, hours_id, minutes)
    page = await pages.person(DESKTOP)
    await _sign_in(api, page)
    await both_sizes(page, "/app/hours")
    await shots.take(page, "organiser-queue-phone")
    await page.set_viewport_size(DESKTOP)
    await page.reload(wait_until="networkidle")
    await shots.take(page, "organiser-queue")
    assert await page.locator("tbody tr").count() == 3
    row = page.locator("#row-vh1")
    assert "李伟" in await row.inner_text() and "0 / 1" in await row.inner_text()
    # One by one: the row's button; htmx swaps the row, saying what happened.
    await row.get_by_role("button", name="批准").click()
    await page.locator('#row-vh1 [data-outcome="approved"]').wait_for()
    assert page.url.endswith("/app/hours")  # in place, no reload
    balance = (await api.get(f"{C}/members/m1/balance")).json()
    assert balance["minutes"]["balance"] == 90 and balance["points"]["score"] == 100 + 15
    # Several at once: tick the other two and press the one button.
    await page.reload(wait_until="networkidle")
    await page.get_by_label("选择 李伟 的 社区清洁").first.check()
    await page.locator("#pick-vh3").check()
    await page.get_by_role("button", name="批准勾选的").click()
    await page.wait_for_url("**/app/hours?r=*")
    await page.wait_for_load_state("networkidle")
    for hours_id in ("vh2", "vh3"):
        await page.locator(f'[data-outcome="approved"][data-hours="{hours_id}"]').wait_for()
    assert "没有等待审批的时长" in await page.locator("main").inner_text()
    await shots.take(page, "organiser-approved")
    balance = (await api.get(f"{C}/members/m1/balance")).json()
    assert balance["minutes"]["balance"] == 180
    assert balance["points"]["score"] == 100 + 15 + 10 + 5
    await page.set_viewport_size(PHONE)
    await page.goto(page.url)
    await page.wait_for_load_state("networkidle")
