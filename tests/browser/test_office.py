"""The community office in a real browser (issue 17): the dashboard shows the
liability the summary report computes and its charts render (ECharts canvases,
no CSP violation); the 红榜 poster prints on one A4 page; a member's sign-in link
is issued, shown as a QR code, and signs the resident in from another browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.async_api import Page

from tests.api.test_rules import SCHEME, event
from tests.browser.conftest import DESKTOP, PHONE, Pages, Shots, both_sizes

C = "/v1/communities/green"


async def _community(api: httpx.AsyncClient) -> None:
    """Green Court under the example scheme, three residents in two households, some
    points earned this month (the poster's), one redeemed and one offset."""
    now = datetime.now(UTC).isoformat()
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/communities", {"id": "green", "name": "绿苑小区"}),
        (f"{C}/households", {"id": "h1", "property_company": "acme", "address": "3-2-101"}),
        (f"{C}/households", {"id": "h2", "property_company": "acme", "address": "5-1-302"}),
        (f"{C}/members", {"id": "m1", "household": "h1", "name": "李伟"}),
        (f"{C}/members", {"id": "m2", "household": "h1", "name": "王芳"}),
        (f"{C}/members", {"id": "m3", "household": "h2", "name": "张强"}),
    ]
    for path, body in calls:
        r = await api.post(path, json=body)
        assert r.status_code == 201, r.text
    r = await api.put(
        f"{C}/rules", content=SCHEME.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    events = [
        event("e1", "fee.paid", "m1", now, days_late=0),
        event("e2", "fee.paid", "m3", now, days_late=0),
        event("e3", "volunteer.approved", "m3", now, minutes=90),
    ]
    r = await api.post(f"{C}/events:batch", json={"events": events})
    assert [item["status"] for item in r.json()["results"]] == [201] * 3, r.text
    moves = [
        ("r1", "member:m1:points", "store:s1:redemptions", 7),
        ("o1", "member:m3:points", "property:acme:offsets", 12),
    ]
    for tx_id, source, destination, amount in moves:
        posting = {
            "source": source,
            "destination": destination,
            "asset": "points",
            "amount": amount,
        }
        r = await api.post(f"{C}/transactions", json={"id": tx_id, "postings": [posting]})
        assert r.status_code == 201, r.text


async def _sign_in(api: httpx.AsyncClient, page: Page) -> None:
    r = await api.post("/v1/api-keys", json={"role": "operator", "community": "green"})
    await page.goto("/app/sign-in")
    await page.get_by_label("密钥").fill(r.json()["key"])
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/app/office")
    await page.wait_for_load_state("networkidle")


async def _dashboard(api: httpx.AsyncClient, page: Page, shots: Shots) -> None:
    summary = (await api.get(f"{C}/reports/summary")).json()["assets"][0]
    fen = summary["liability"]["fen"]
    await both_sizes(page, "/app/office")
    await shots.take(page, "office-dashboard-phone")
    await page.set_viewport_size(DESKTOP)
    await page.reload(wait_until="networkidle")
    for chart in ("#flows-chart", "#outstanding-chart"):
        await page.locator(f'{chart}[data-rendered="yes"] canvas').first.wait_for()
    shown = await page.locator("#liability .value").inner_text()
    assert shown == f"¥{fen // 100:,}.{fen % 100:02d}" and fen > 0
    last = page.locator("#months tbody tr").last
    assert await last.locator('[data-flow="redeemed"]').inner_text() == str(summary["redeemed"])
    assert await last.locator('[data-flow="offset"]').inner_text() == str(summary["offset"])
    await shots.take(page, "office-dashboard")


async def _poster(page: Page, shots: Shots) -> None:
    await both_sizes(page, "/app/office/poster")
    await page.set_viewport_size(DESKTOP)
    await page.reload(wait_until="networkidle")
    rows = page.locator(".office-poster-table tbody tr")
    assert await rows.count() == 2 and "张强" in await rows.first.inner_text()
    await shots.take(page, "office-poster")
    await page.emulate_media(media="print")
    await shots.take(page, "office-poster-print")
    await page.emulate_media(media="screen")
    pdf = await page.pdf(format="A4", prefer_css_page_size=True, print_background=True)
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pages == 1, f"the poster prints on {pages} pages"
    # The print button calls window.print (stubbed: headless has no dialog).
    await page.evaluate("window.print = () => { document.body.dataset.printed = 'yes'; }")
    await page.get_by_role("button", name="打印").click()
    assert await page.evaluate("document.body.dataset.printed") == "yes"


async def _members(page: Page, shots: Shots) -> None:
    await both_sizes(page, "/app/office/households")
    await shots.take(page, "office-households-phone")
    await page.set_viewport_size(DESKTOP)
    await page.reload(wait_until="networkidle")
    await shots.take(page, "office-households")
    await both_sizes(page, "/app/office/members")
    await shots.take(page, "office-members-phone")
    await page.set_viewport_size(DESKTOP)
    await page.get_by_label("查找居民").fill("张")
    await page.get_by_role("button", name="查找").click()
    await page.wait_for_url("**/app/office/members?q=*")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("#members tbody tr").count() == 1
    await shots.take(page, "office-members")
    await page.get_by_role("link", name="张强").click()
    await page.wait_for_url("**/app/office/members/m3")
    await page.wait_for_load_state("networkidle")
    await both_sizes(page, "/app/office/members/m3")
    await shots.take(page, "office-member-phone")
    await page.set_viewport_size(DESKTOP)
    await page.reload(wait_until="networkidle")
    await shots.take(page, "office-member")


async def test_the_office_dashboard_poster_members_and_a_sign_in_card(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    await _community(api)
    page = await pages.person(DESKTOP)
    await _sign_in(api, page)
    await _dashboard(api, page, shots)
    await _poster(page, shots)
    await _members(page, shots)
    # The sign-in card: a QR code and the link, on this answer only.
    await page.get_by_role("button", name="登录链接").click()
    await page.locator("#link-qr svg").wait_for()
    url = await page.locator("#link-url").inner_text()
    assert "/app/in#" in url
    await shots.take(page, "office-link")
    await page.set_viewport_size(PHONE)
    await shots.take(page, "office-link-phone")
    await page.emulate_media(media="print")
    await shots.take(page, "office-link-print")
    resident = await pages.person(PHONE)
    await resident.goto(url)
    await resident.wait_for_url("**/app/me")
    balance = (await api.get(f"{C}/members/m3/balance")).json()
    assert f"{balance['points']['score']}" in (await resident.locator("main").inner_text()).replace(
        ",", ""
    )
