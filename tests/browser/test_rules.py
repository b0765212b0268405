"""The rule-set editor in a real browser (issue 17's operator path): a draft with an
error is refused at its line (marked, and reachable from the message), the fixed draft
is published and listed, and a draft simulated over the last 30 days of real events
shows who would gain or lose, with the numbers the API computes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Dialog, Page

from tests.api.test_rules import SCHEME, event
from tests.api.test_rules_replay import DRAFT_YAML, _draft
from tests.browser.conftest import DESKTOP, PHONE, Pages, Shots, both_sizes

C = "/v1/communities/green"
BAD_LINE = 29  # SCHEME's flying-lead `deduct: 10`, made `deduct: ten`
BAD = SCHEME.replace("deduct: 10", "deduct: ten")


def _recent(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def _community(api: httpx.AsyncClient) -> None:
    """Green Court under the example scheme, three residents, a few recent events."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/communities", {"id": "green", "name": "绿苑小区"}),
        (f"{C}/households", {"id": "h1", "property_company": "acme"}),
        (f"{C}/members", {"id": "m1", "household": "h1", "name": "李伟"}),
        (f"{C}/members", {"id": "m2", "household": "h1", "name": "王芳"}),
        (f"{C}/members", {"id": "m3", "household": "h1", "name": "张强"}),
    ]
    for path, body in calls:
        r = await api.post(path, json=body)
        assert r.status_code == 201, r.text
    r = await api.put(
        f"{C}/rules", content=SCHEME.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    events = [
        event("e1", "fee.paid", "m1", _recent(5), days_late=0),
        event("e2", "fee.paid", "m2", _recent(4), days_late=6),
        event("e3", "compact.violation", "m2", _recent(3), kind="flying_lead_charging"),
        event("e4", "volunteer.approved", "m3", _recent(2), minutes=90),
    ]
    r = await api.post(f"{C}/events:batch", json={"events": events})
    assert [item["status"] for item in r.json()["results"]] == [201] * len(events), r.text


async def _sign_in(api: httpx.AsyncClient, page: Page) -> None:
    r = await api.post("/v1/api-keys", json={"role": "operator", "community": "green"})
    await page.goto("/app/sign-in")
    await page.get_by_label("密钥").fill(r.json()["key"])
    await page.get_by_role("button", name="登录").click()
    await page.wait_for_url("**/app/office")


async def _accept(dialog: Dialog) -> None:
    assert "确定发布" in dialog.message
    await dialog.accept()


async def _error_is_marked(page: Page, shots: Shots) -> None:
    await page.locator("#draft").fill(BAD)
    await page.get_by_role("button", name="发布新版本").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    text = await alert.inner_text()
    assert f"第 {BAD_LINE} 行有错误" in text and f"(line {BAD_LINE})" in text
    assert await page.locator("#draft-gutter span.bad").inner_text() == str(BAD_LINE)
    assert await page.locator("#draft").input_value() == BAD  # the draft kept
    await page.get_by_role("link", name=f"跳到第 {BAD_LINE} 行").click()
    selected = await page.locator("#draft").evaluate(
        "a => [document.activeElement === a, a.value.slice(a.selectionStart, a.selectionEnd)]"
    )
    assert selected == [True, BAD.split("\n")[BAD_LINE - 1]]
    await shots.take(page, "rules-error")


async def _simulated(page: Page) -> tuple[dict[str, str], list[list[str]]]:
    totals = {
        name: await page.locator(f'[data-total="{name}"]').inner_text()
        for name in ("posted", "simulated", "difference", "gained", "lost")
    }
    rows = []
    for row in await page.locator("#sim-members tbody tr").all():
        cells = [await row.get_attribute("data-member") or ""]
        for col in ("posted", "simulated", "difference"):
            cells.append(await row.locator(f'[data-col="{col}"]').inner_text())
        cells.append(await row.locator(".sim-word").inner_text())
        rows.append(cells)
    return totals, rows


def _signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else (f"\u2212{-value:,}" if value < 0 else "0")


async def test_an_operator_fixes_publishes_and_simulates_a_rule_set(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    await _community(api)
    page = await pages.person(DESKTOP)
    page.on("dialog", _accept)
    await _sign_in(api, page)
    await both_sizes(page, "/app/office/rules")
    await shots.take(page, "rules-editor-phone")
    await page.set_viewport_size(DESKTOP)
    await shots.take(page, "rules-editor")

    await _error_is_marked(page, shots)
    await page.locator("#draft").fill(BAD.replace("deduct: ten", "deduct: 10"))
    await page.get_by_role("button", name="发布新版本").click()
    await page.wait_for_url("**/app/office/rules?published=2")
    assert "第 2 版已发布并生效" in await page.get_by_role("status").inner_text()
    assert "正在执行" in await page.locator('tr[data-version="2"]').inner_text()
    assert (await api.get(f"{C}/rules")).json()["version"] == 2

    await page.locator("#draft").fill(DRAFT_YAML)
    await page.get_by_role("button", name="用最近 30 天的数据模拟这份草稿").click()
    await page.wait_for_url("**/app/office/rules/simulate")
    await page.locator("#sim-totals").wait_for()
    end = datetime.now(UTC)
    window = {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat()}
    r = await api.post(f"{C}/rules/simulate", json={"rules": _draft(), "replay": window})
    expected = r.json()
    assert expected["totals"]["gained"] >= 1 and expected["totals"]["lost"] >= 1
    totals, rows = await _simulated(page)
    assert totals == {
        "posted": f"{expected['totals']['posted']:,}",
        "simulated": f"{expected['totals']['simulated']:,}",
        "difference": _signed(expected["totals"]["difference"]),
        "gained": str(expected["totals"]["gained"]),
        "lost": str(expected["totals"]["lost"]),
    }
    words = {1: "多得", -1: "少得", 0: "不变"}
    assert rows == [
        [
            m["member"],
            f"{m['posted']:,}",
            f"{m['simulated']:,}",
            _signed(m["difference"]),
            words[(m["difference"] > 0) - (m["difference"] < 0)],
        ]
        for m in expected["members"]
    ]
    await shots.take(page, "rules-simulate")
    await page.set_viewport_size(PHONE)
    await shots.take(page, "rules-simulate-phone")
    # The version in force replayed (the page's GET), at both sizes.
    await both_sizes(page, "/app/office/rules/simulate")
    assert await page.locator('[data-total="difference"]').inner_text() == "0"
