"""The rule-set editor and the simulation page over HTTP: who may open them, a refused
draft keeps its text and names its line (and stores nothing), publishing makes the
version the API reports, and the simulation shows the numbers the API computes."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.web.pages.rules import signed
from tests.api.test_rules import SCHEME, event, publish
from tests.api.test_rules_replay import DRAFT_YAML, _draft
from tests.helpers import ADMIN_KEY, C, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}
RULES = "/app/office/rules"
SIMULATE = "/app/office/rules/simulate"
BAD_LINE = 29  # SCHEME's flying-lead `deduct: 10`, made `deduct: ten`
BAD = SCHEME.replace("deduct: 10", "deduct: ten")
ROW = re.compile(r'<tr data-member="([^"]+)">(.*?)</tr>', re.DOTALL)
COL = re.compile(r'data-col="(\w+)">([^<]*)<')
TOTAL = re.compile(r'data-total="(\w+)">([^<]*)<')


async def _operator(client: Client, browser: Client, community_id: str = "green") -> str:
    """Signs `browser` in with a new operator key of `community_id`; the editor's token."""
    r = await client.post("/v1/api-keys", json={"role": "operator", "community": community_id})
    assert r.status_code == 201, r.text
    assert await sign_in_with_key(browser, r.json()["key"]) == "/app/office"
    r = await browser.get(RULES)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


async def _versions(dsn: str, community_id: str = "green") -> list[int]:
    """The versions stored (the database: the API's process caches them for 2 s)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT version FROM rule_sets WHERE community_id = $1 ORDER BY 1", community_id
        )
    finally:
        await conn.close()
    return [r["version"] for r in rows]


async def _in_force(client: Client, version: int) -> dict[str, Any]:
    """The API's `GET …/rules` once its process sees `version` (another app here)."""
    for _ in range(40):
        active: dict[str, Any] = (await client.get(f"{C}/rules")).json()
        if active["version"] == version:
            return active
        await asyncio.sleep(0.1)
    raise AssertionError(f"the API never reported version {version}: {active}")


def _textarea(page: str) -> str:
    found = re.search(r'<textarea id="draft"[^>]*>\n(.*?)</textarea>', page, re.DOTALL)
    assert found, "the page has no draft"
    return unescape(found.group(1))


def _numbers(page: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    totals = dict(TOTAL.findall(page))
    members = {m: dict(COL.findall(row)) for m, row in ROW.findall(page)}
    return totals, members


def _recent(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def test_an_error_is_shown_at_its_line_the_draft_kept_and_nothing_stored(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await community(client)
    await publish(client)
    csrf = await _operator(client, browser_client)
    page = (await browser_client.get(RULES)).text
    assert "第 1 版" in page and _textarea(page) == SCHEME  # the text it was published as
    for action in ("publish", "check"):
        form = {"csrf": csrf, "draft": BAD.replace("\n", "\r\n"), "action": action}
        r = await browser_client.post(RULES, data=form, headers=SAME)
        assert r.status_code == 422
        assert f"第 {BAD_LINE} 行有错误" in r.text and f"(line {BAD_LINE})" in r.text
        assert "unknown variable &#39;ten&#39;" in r.text
        assert f'data-goto-line="{BAD_LINE}"' in r.text
        assert f'<span class="bad">{BAD_LINE}</span>' in r.text  # the gutter marks it
        assert r.text.count('class="bad"') == 1
        assert _textarea(r.text) == BAD  # the draft kept, its line ends as typed
    assert await _versions(dsn) == [1]
    # Checking a good draft stores nothing either.
    good = SCHEME.replace("baseline: 100", "baseline: 120")
    r = await browser_client.post(
        RULES, data={"csrf": csrf, "draft": good, "action": "check"}, headers=SAME
    )
    assert r.status_code == 200 and "检查通过" in r.text and _textarea(r.text) == good
    assert await _versions(dsn) == [1]


async def test_publishing_makes_the_version_the_api_reports(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    csrf = await _operator(client, browser_client)
    page = (await browser_client.get(RULES)).text
    assert "默认规则（第 0 版）" in page and "baseline: 100" in _textarea(page)
    good = SCHEME.replace("baseline: 100", "baseline: 120")
    r = await browser_client.post(
        RULES, data={"csrf": csrf, "draft": good, "action": "publish"}, headers=SAME
    )
    assert (r.status_code, r.headers["location"]) == (303, f"{RULES}?published=1")
    active = await _in_force(client, 1)
    assert active["document"]["baseline"] == 120
    page = (await browser_client.get(r.headers["location"])).text
    assert "第 1 版已发布并生效" in page and '<tr data-version="1">' in page
    assert _textarea(page) == good
    # An earlier version loads into the editor from the list.
    r = await browser_client.post(
        RULES, data={"csrf": csrf, "draft": SCHEME, "action": "publish"}, headers=SAME
    )
    assert r.headers["location"] == f"{RULES}?published=2"
    page = (await browser_client.get(f"{RULES}?version=1&lang=en")).text
    assert "Version 2 is in force" in page and _textarea(page) == good


async def test_only_operators_of_the_community_reach_the_rules(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await community(client)
    await publish(client)
    r = await client.post(f"{C}/members/m0/sign-in-links", json={})
    await sign_in_with_link(browser_client, r.json()["url"])
    for path in (RULES, SIMULATE):
        assert (await browser_client.get(path)).status_code == 403
    csrf = csrf_of((await browser_client.get("/app/welcome")).text)
    form = {"csrf": csrf, "draft": SCHEME, "action": "publish"}
    assert (await browser_client.post(RULES, data=form, headers=SAME)).status_code == 403

    # Another community's operator edits its own rules, whatever it asks for.
    browser_client.cookies.clear()
    r = await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    assert r.status_code == 201
    csrf = await _operator(client, browser_client, "blue")
    page = (await browser_client.get(RULES)).text
    assert "默认规则（第 0 版）" in page
    form = {"csrf": csrf, "draft": SCHEME, "action": "publish"}
    r = await browser_client.post(RULES, data=form, headers=SAME)
    assert r.status_code == 303
    assert await _versions(dsn) == [1]  # green's: unchanged
    assert await _versions(dsn, "blue") == [1]

    # A form without the session's token changes nothing.
    r = await browser_client.post(RULES, data={"draft": SCHEME, "action": "publish"}, headers=SAME)
    assert r.status_code == 403
    assert await _versions(dsn, "blue") == [1]


async def test_an_admin_session_is_sent_to_a_community_key(
    client: Client, browser_client: Client
) -> None:
    """The office's pages are a community's, as the other office pages are."""
    await community(client)
    await sign_in_with_key(browser_client, ADMIN_KEY)
    for path in (RULES, SIMULATE):
        assert (await browser_client.get(path)).status_code == 403


async def test_the_simulation_shows_what_the_api_computes(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await community(client, members=3)
    await publish(client)
    events = [
        event("e1", "fee.paid", "m0", _recent(3), days_late=0),
        event("e2", "fee.paid", "m1", _recent(2.5), days_late=4),
        event("e3", "compact.violation", "m1", _recent(2), kind="flying_lead_charging"),
        event("e4", "volunteer.approved", "m2", _recent(1), minutes=60),
        event("old", "fee.paid", "m2", _recent(40), days_late=0),  # before the 30 days
    ]
    r = await client.post(f"{C}/events:batch", json={"events": events})
    assert [item["status"] for item in r.json()["results"]] == [201] * len(events)
    csrf = await _operator(client, browser_client)
    before = await _versions(dsn)

    form = {"csrf": csrf, "draft": DRAFT_YAML, "action": ""}
    r = await browser_client.post(SIMULATE, data=form, headers=SAME)
    assert r.status_code == 200, r.text
    end = datetime.now(UTC)
    window = {"from": (end - timedelta(days=30)).isoformat(), "to": end.isoformat()}
    api = await client.post(f"{C}/rules/simulate", json={"rules": _draft(), "replay": window})
    assert api.status_code == 200, api.text
    expected = api.json()
    assert expected["events"] == 4 and expected["totals"]["gained"] >= 1
    assert expected["totals"]["lost"] >= 1
    totals, members = _numbers(r.text)
    assert totals == {
        "posted": f"{expected['totals']['posted']:,}",
        "simulated": f"{expected['totals']['simulated']:,}",
        "difference": signed(expected["totals"]["difference"]),
        "gained": str(expected["totals"]["gained"]),
        "lost": str(expected["totals"]["lost"]),
    }
    assert list(members) == [m["member"] for m in expected["members"]]  # by |difference|
    for m in expected["members"]:
        assert members[m["member"]] == {
            "posted": f"{m['posted']:,}",
            "simulated": f"{m['simulated']:,}",
            "difference": signed(m["difference"]),
        }
    assert "多得" in r.text and "少得" in r.text and "\u2212" in r.text
    assert _textarea(r.text) == DRAFT_YAML
    assert await _versions(dsn) == before  # a simulation stores nothing

    # The version in force, replayed: what it posted is what it would post.
    page = (await browser_client.get(SIMULATE)).text
    totals, _ = _numbers(page)
    assert totals["difference"] == "0" and totals["posted"] == totals["simulated"]

    # A draft with an error: the editor again, the line marked, nothing replayed.
    r = await browser_client.post(SIMULATE, data={**form, "draft": BAD}, headers=SAME)
    assert r.status_code == 422 and f'<span class="bad">{BAD_LINE}</span>' in r.text
    assert 'id="sim-totals"' not in r.text and _textarea(r.text) == BAD
