"""The community office's pages: the dashboard's numbers equal the summary report's,
the poster is the leaderboard (opt-outs left out), members and households, and a
sign-in link shown once that signs the resident in. Other roles and communities
are refused; refused forms change nothing."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from service.reports.service import last_months
from tests.api.test_reports import _random_mix
from tests.helpers import ADMIN_KEY, SH, C, Client, award, balance, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

SAME = {"Sec-Fetch-Site": "same-origin"}
FLOWS = ("issued", "redeemed", "offset", "expired")


async def _operator(client: Client, browser: Client, community_id: str = "green") -> str:
    """Signs `browser` in with a new operator key; returns a CSRF token of its session."""
    r = await client.post("/v1/api-keys", json={"role": "operator", "community": community_id})
    assert r.status_code == 201, r.text
    assert await sign_in_with_key(browser, r.json()["key"]) == "/app/office"
    return csrf_of((await browser.get("/app/office/members")).text)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


async def test_the_dashboard_shows_the_summarys_numbers_by_month_and_the_liability(
    client: Client, browser_client: Client
) -> None:
    await community(client, members=4, households=2)
    await _random_mix(client, random.Random(5))
    await _operator(client, browser_client)
    r = await browser_client.get("/app/office")
    assert r.status_code == 200, r.text
    page = r.text
    whole = (await client.get(f"{C}/reports/summary")).json()["assets"][0]
    assert whole["asset"] == "points"
    fen = whole["liability"]["fen"]
    assert f'data-fen="{fen}"' in page and f"¥{fen // 100:,}.{fen % 100:02d}" in page
    # The table: the last 12 months, all the history in this one; the same as the API's.
    months = re.findall(r'<tr data-period="(\d{4}-\d{2})">', page)
    assert months == last_months(datetime.now(UTC), SH, 12)
    current = page.split(f'<tr data-period="{months[-1]}">')[1].split("</tr>")[0]
    cells = dict(re.findall(r'data-flow="(\w+)">([\d,]+)<', current))
    for flow in FLOWS:
        assert _number(cells[flow]) == whole[flow], flow
    assert _number(cells["outstanding"]) == whole["outstanding"]
    earlier = page.split(f'<tr data-period="{months[0]}">')[1].split("</tr>")[0]
    assert set(re.findall(r'data-flow="\w+">([\d,]+)<', earlier)) == {"0"}
    # The chart's data (a data- attribute, no inline script) are the table's numbers.
    raw = re.search(r'id="flows-chart" data-chart="([^"]+)"', page)
    assert raw is not None and "<script>" not in page.split("<main")[1]
    chart = msgspec.json.decode(raw.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    assert chart["periods"] == months
    assert [s["data"][-1] for s in chart["series"]] == [whole[f] for f in FLOWS]
    assert chart["outstanding"]["data"][-1] == whole["outstanding"]
    assert "/app/static/vendor/echarts-6.1.0.common.min.js" in page


async def test_monthly_figures_add_up_to_the_summary_over_the_same_months(
    client: Client, pool: Any
) -> None:
    from service.reports import service as reports

    await community(client, members=4, households=2)
    await _random_mix(client, random.Random(11))
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        months = await reports.monthly(conn, "green", SH, now)
    assert len(months) == 12 and months[-1].period == last_months(now, SH, 1)[0]
    whole = (await client.get(f"{C}/reports/summary")).json()["assets"][0]
    for flow in (*FLOWS, "deducted", "adjusted", "converted"):
        assert sum(getattr(m, flow) for m in months) == whole[flow], flow
    assert months[-1].outstanding == whole["outstanding"]
    assert all(m.outstanding == 0 for m in months[:-1])


async def test_the_poster_is_the_leaderboard_without_those_who_opted_out(
    client: Client, browser_client: Client
) -> None:
    await community(client, members=0)
    for m, name in (("m0", "王芳"), ("m1", "李明"), ("m2", None)):
        r = await client.post(f"{C}/members", json={"id": m, "household": "h0", "name": name})
        assert r.status_code == 201, r.text
    doc: dict[str, Any] = {
        "rules": [{"id": "help", "on": "helped", "award": "event.points", "reason": "helped"}]
    }
    assert (await client.put(f"{C}/rules", json=doc)).status_code in (200, 201)
    for i, (m, points) in enumerate([("m0", 5), ("m1", 9), ("m2", 7)]):
        body = {
            "id": f"e{i}",
            "type": "helped",
            "member": m,
            "occurred_at": "2026-11-10T10:00:00+08:00",
            "attributes": {"points": points},
        }
        assert (await client.post(f"{C}/events", json=body)).status_code == 201
    r = await client.patch(f"{C}/members/m1", json={"leaderboard_opt_out": True})
    assert r.status_code == 200
    await _operator(client, browser_client)
    page = (await browser_client.get("/app/office/poster?period=2026-11")).text
    board = (await client.get(f"{C}/reports/leaderboard?period=2026-11")).json()["leaders"]
    assert [(x["member"], x["earned"]) for x in board] == [("m2", 7), ("m0", 5)]
    rows = re.findall(
        r'<tr class="office-rank-(\d+)">\s*<td class="office-rank">\d+</td>\s*'
        r'<td>([^<]+)</td>\s*<td class="num">(\d+)</td>',
        page,
    )
    assert rows == [("1", "居民 m2", "7"), ("2", "王芳", "5")]
    assert "李明" not in page and "Green Court" in page and "2026 年 11 月" in page
    assert "data-print" in page and "office-poster-page" in page
    # An unreadable period falls back to this month's (empty) board.
    page = (await browser_client.get("/app/office/poster?period=2026-13")).text
    assert "这个月还没有人获得积分" in page


async def test_members_households_and_a_member_page_with_the_apis_balance(
    client: Client, browser_client: Client
) -> None:
    await community(client, members=3, households=2)
    await award(client, "a1", "m1", 37)
    await _operator(client, browser_client)
    page = (await browser_client.get("/app/office/members")).text
    assert re.findall(r'<tr data-member="([^"]+)">', page) == ["m0", "m1", "m2"]
    page = (await browser_client.get("/app/office/members?q=h1")).text
    assert re.findall(r'<tr data-member="([^"]+)">', page) == ["m1"]
    row = page.split('<tr data-member="m1">')[1].split("</tr>")[0]
    assert ">137<" in row and "在册" in row
    assert "m0" not in re.findall(r'data-member="([^"]+)"', page)
    # LIKE's wildcards are taken literally.
    page = (await browser_client.get("/app/office/members?q=%25")).text
    assert re.findall(r'<tr data-member="([^"]+)">', page) == []
    page = (await browser_client.get("/app/office/members/m1")).text
    api = await balance(client, "m1")
    score = re.search(
        r'id="score"><div class="label">[^<]+</div><div class="value">([\d,]+)<', page
    )
    assert score is not None and _number(score.group(1)) == api["points"]["score"] == 137
    assert "sign-in-link" in page
    page = (await browser_client.get("/app/office/households")).text
    assert re.findall(r'<tr data-household="([^"]+)">', page) == ["h0", "h1"]
    assert 'href="/app/office/members/m0"' in page.split('data-household="h0"')[1].split("</tr>")[0]
    assert (await browser_client.get("/app/office/members/nobody")).status_code == 404


async def test_a_sign_in_link_is_shown_once_as_a_qr_code_and_signs_the_resident_in(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    csrf = await _operator(client, browser_client)
    r = await browser_client.post(
        "/app/office/members/m0/sign-in-link", data={"csrf": csrf}, headers=SAME
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    url = re.search(r'<code id="link-url">([^<]+)</code>', r.text)
    assert url is not None and "/app/in#" in url.group(1)
    assert "<svg" in r.text.split('id="link-qr"')[1][:400]
    # Not on the member page, nor anywhere else.
    token = url.group(1).split("#")[1]
    assert token not in (await browser_client.get("/app/office/members/m0")).text
    # Without the session's token, no link is issued.
    r = await browser_client.post("/app/office/members/m0/sign-in-link", headers=SAME)
    assert r.status_code == 403 and "/app/in#" not in r.text
    assert await sign_in_with_link(browser_client, url.group(1)) == "/app/me"
    assert (await browser_client.get("/app/office")).status_code == 403


async def test_households_and_members_made_from_the_forms(
    client: Client, browser_client: Client
) -> None:
    await community(client, members=1)
    csrf = await _operator(client, browser_client)
    form = {"csrf": csrf, "id": "h9", "address": "3-2-101", "property_company": "acme"}
    r = await browser_client.post("/app/office/households", data=form, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/app/office/households")
    # The id is the client id: the same form again is a replay, a different one refused.
    r = await browser_client.post("/app/office/households", data=form, headers=SAME)
    assert r.status_code == 303
    r = await browser_client.post(
        "/app/office/households", data={**form, "address": "elsewhere"}, headers=SAME
    )
    assert r.status_code == 409 and "这个编号已被使用" in r.text
    household = (await client.get(f"{C}/members/m0")).json()  # the API still answers
    assert household["household"] == "h0"
    form = {"csrf": csrf, "id": "m9", "household": "h9", "name": "赵强"}
    r = await browser_client.post("/app/office/members", data=form, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/app/office/members/m9")
    member = (await client.get(f"{C}/members/m9")).json()
    assert member["name"] == "赵强" and member["household"] == "h9"
    assert (await balance(client, "m9"))["points"]["score"] == 100
    # The same member through the API is a replay: the form sent the API's body.
    r = await client.post(f"{C}/members", json={"id": "m9", "household": "h9", "name": "赵强"})
    assert r.status_code == 200 and r.headers.get("idempotent-replayed") == "true"
    r = await browser_client.post(
        "/app/office/members", data={**form, "id": "bad id!"}, headers=SAME
    )
    assert r.status_code == 422 and 'data-code="validation_error"' in r.text
    r = await browser_client.post(
        "/app/office/members", data={**form, "id": "m10", "household": "nope"}, headers=SAME
    )
    assert r.status_code == 404 and "找不到所选的住户" in r.text
    assert (await client.get(f"{C}/members/m10")).status_code == 404


async def test_other_roles_and_communities_are_refused(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    paths = (
        "/app/office",
        "/app/office/poster",
        "/app/office/members",
        "/app/office/members/m0",
        "/app/office/households",
    )
    for role in ("organiser", "volunteer_app"):
        r = await client.post("/v1/api-keys", json={"role": role, "community": "green"})
        await sign_in_with_key(browser_client, r.json()["key"])
        for path in paths:
            assert (await browser_client.get(path)).status_code == 403, (role, path)
    link = (await client.post(f"{C}/members/m0/sign-in-links", json={})).json()["url"]
    await sign_in_with_link(browser_client, link)
    for path in paths:
        assert (await browser_client.get(path)).status_code == 403, path
    # Another community's operator sees only its own community.
    assert (
        await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    ).status_code == 201
    csrf = await _operator(client, browser_client, "blue")
    assert (await browser_client.get("/app/office/members/m0")).status_code == 404
    page = (await browser_client.get("/app/office/members")).text
    assert 'data-member="m0"' not in page
    r = await browser_client.post(
        "/app/office/members/m0/sign-in-link", data={"csrf": csrf}, headers=SAME
    )
    assert r.status_code == 404 and "/app/in#" not in r.text
    # The admin key has no community of its own here.
    await sign_in_with_key(browser_client, ADMIN_KEY)
    r = await browser_client.get("/app/office")
    assert r.status_code == 403 and 'data-code="forbidden"' in r.text
