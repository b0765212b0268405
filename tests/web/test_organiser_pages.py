"""The organisers' pages: the pending-hours queue of their teams, deciding one or
several at once. Attackers first: another team's organiser, the key that logged
the hours, a form without the session's token, other roles. Refusals change
nothing; what the page shows is what the API reports."""

from __future__ import annotations

import re
from typing import Any

from tests.api.test_organisers import HOURS, TWO_APPROVALS, app_key, log, unchanged
from tests.api.test_rules import publish
from tests.helpers import C, Client, balance, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

SAME = {"Sec-Fetch-Site": "same-origin"}


async def _signed_in(client: Client, browser: Client, role: str, **scope: Any) -> str:
    """Signs `browser` in with a new key of `role`; returns the queue page's CSRF token."""
    r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
    assert r.status_code == 201, r.text
    await sign_in_with_key(browser, r.json()["key"])
    page = await browser.get("/app/hours")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def _post(browser: Client, csrf: str, **form: Any) -> str:
    r = await browser.post("/app/hours", data={"csrf": csrf, **form}, headers=SAME)
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


async def test_the_queue_shows_only_the_teams_pending_hours_with_approvals_needed(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    await log(client, app, "vh1", team="a", minutes=75)
    await log(client, app, "vh2", team="b")
    await log(client, app, "vh3")
    await _signed_in(client, browser_client, "organiser", teams=["a"])
    page = (await browser_client.get("/app/hours")).text
    assert 'id="row-vh1"' in page and "elderly visits" in page and ">75<" in page
    assert 'id="row-vh2"' not in page and 'id="row-vh3"' not in page
    row = page.split('id="row-vh1"')[1].split("</tr>")[0]
    assert "0 / 2" in row and re.search(r'data-label="还需批准" class="num">2<', row), row
    # The same queue as the API's for this key.
    queue = (await client.get(f"{HOURS}?status=pending&team=a")).json()["hours"]
    assert [h["id"] for h in queue] == ["vh1"] and queue[0]["approvals_needed"] == 2
    # Naming another team is refused, in words.
    r = await browser_client.get("/app/hours?team=b")
    assert r.status_code == 403 and "权限" in r.text
    english = (await browser_client.get("/app/hours?lang=en")).text
    assert "Volunteer hours to approve" in english and "0 of 2" in english


async def test_approving_one_then_several_credits_the_minutes(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client)  # one approval; volunteer-points awards minutes / 6
    app = await app_key(client)
    for hours_id, minutes in (("vh1", 90), ("vh2", 60), ("vh3", 30)):
        await log(client, app, hours_id, minutes=minutes)
    csrf = await _signed_in(client, browser_client, "organiser")
    location = await _post(browser_client, csrf, one="approve:vh1")
    assert location == "/app/hours?r=approved%3Avh1"
    page = (await browser_client.get(location)).text
    assert 'data-outcome="approved" data-hours="vh1"' in page and "已批准" in page
    assert 'id="row-vh1"' not in page and 'id="row-vh2"' in page
    assert (await balance(client, "m0"))["minutes"]["balance"] == 90
    # Several at once: ticked rows and the bulk button.
    location = await _post(browser_client, csrf, hours=["vh2", "vh3"], action="approve")
    page = (await browser_client.get(location)).text
    assert 'data-outcome="approved" data-hours="vh2"' in page
    assert 'data-outcome="approved" data-hours="vh3"' in page
    after = await balance(client, "m0")
    assert after["minutes"]["balance"] == 180
    assert after["points"]["score"] == 100 + 15 + 10 + 5  # the rule's points, per hours
    for hours_id in ("vh1", "vh2", "vh3"):
        assert (await client.get(f"{HOURS}/{hours_id}")).json()["status"] == "approved"
    # Pressing it again is a replay, said so; nothing is credited twice.
    page = (await browser_client.get(await _post(browser_client, csrf, one="approve:vh1"))).text
    assert 'data-outcome="replayed" data-hours="vh1"' in page
    assert (await balance(client, "m0"))["minutes"]["balance"] == 180


async def test_one_refusal_among_several_hides_no_other_outcome(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client)
    app = await app_key(client)
    await log(client, app, "vh1", team="a")
    await log(client, app, "vh2", team="b")  # another team's: refused
    await log(client, app, "vh3", team="a")
    csrf = await _signed_in(client, browser_client, "organiser", teams=["a"])
    location = await _post(
        browser_client, csrf, hours=["vh1", "vh2", "vh3", "nope"], action="reject", team="a"
    )
    assert location.startswith("/app/hours?team=a&")
    page = (await browser_client.get(location)).text
    assert 'data-outcome="rejected" data-hours="vh1"' in page
    assert 'data-outcome="other_team" data-hours="vh2"' in page and "不是您团队" in page
    assert 'data-outcome="rejected" data-hours="vh3"' in page
    assert 'data-outcome="not_found" data-hours="nope"' in page
    await unchanged(client, "vh2")
    assert (await client.get(f"{HOURS}/vh1")).json()["status"] == "rejected"
    # Nothing ticked: said so.
    page = (await browser_client.get(await _post(browser_client, csrf, action="approve"))).text
    assert "请先勾选" in page


async def test_the_key_that_logged_hours_is_told_it_may_not_approve_them(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client)
    r = await client.post("/v1/api-keys", json={"role": "operator", "community": "green"})
    operator = r.json()["key"]
    logged = await client.post(
        HOURS,
        json={
            "id": "vh1",
            "member": "m0",
            "activity": "garden",
            "started_at": "2026-11-20T09:00:00+08:00",
            "minutes": 45,
        },
        headers={"Authorization": f"Bearer {operator}"},
    )
    assert logged.status_code == 201, logged.text
    await sign_in_with_key(browser_client, operator)
    csrf = csrf_of((await browser_client.get("/app/hours")).text)
    page = (await browser_client.get(await _post(browser_client, csrf, one="approve:vh1"))).text
    assert (
        'data-outcome="own" data-hours="vh1"' in page and "登记这些时长的密钥不能自己批准" in page
    )
    hours = (await client.get(f"{HOURS}/vh1")).json()
    assert hours["status"] == "pending" and hours["approvals"] == []
    assert (await balance(client, "m0"))["minutes"]["balance"] == 0


async def test_htmx_updates_the_row_and_plain_posts_redirect(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    await log(client, app, "vh1")
    csrf = await _signed_in(client, browser_client, "organiser")
    r = await browser_client.post(
        "/app/hours/vh1/approve",
        headers={**SAME, "HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert r.status_code == 200 and r.text.lstrip().startswith('<tr id="row-vh1"'), r.text
    assert 'data-outcome="recorded"' in r.text and "还需要 1 人批准" in r.text
    assert "<html" not in r.text
    hours = (await client.get(f"{HOURS}/vh1")).json()
    assert hours["status"] == "pending" and len(hours["approvals"]) == 1
    # Without htmx, the same route sends the browser back to the queue.
    r = await browser_client.post("/app/hours/vh1/approve", data={"csrf": csrf}, headers=SAME)
    assert r.status_code == 303 and r.headers["location"] == "/app/hours?r=replayed%3Avh1"
    # A second organiser's approval completes them.
    await _signed_in(client, browser_client, "organiser")
    csrf = csrf_of((await browser_client.get("/app/hours")).text)
    r = await browser_client.post(
        "/app/hours/vh1/approve", headers={**SAME, "HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert 'data-outcome="approved"' in r.text
    assert (await balance(client, "m0"))["minutes"]["balance"] == 90


async def test_forged_forms_and_other_roles_change_nothing(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    await publish(client)
    await log(client, await app_key(client), "vh1")
    csrf = await _signed_in(client, browser_client, "organiser")
    r = await browser_client.post("/app/hours", data={"one": "approve:vh1"}, headers=SAME)
    assert r.status_code == 403
    r = await browser_client.post(
        "/app/hours",
        data={"csrf": csrf, "one": "approve:vh1"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403
    await unchanged(client, "vh1")
    # A store's till and a resident have no queue; neither has another community's organiser.
    for role, scope in (("store", {"store": "s1"}), ("volunteer_app", {})):
        r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
        await sign_in_with_key(browser_client, r.json()["key"])
        assert (await browser_client.get("/app/hours")).status_code == 403
    link = (await client.post(f"{C}/members/m0/sign-in-links", json={})).json()["url"]
    await sign_in_with_link(browser_client, link)
    assert (await browser_client.get("/app/hours")).status_code == 403
    assert (
        await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    ).status_code == 201
    r = await client.post("/v1/api-keys", json={"role": "organiser", "community": "blue"})
    await sign_in_with_key(browser_client, r.json()["key"])
    page = await browser_client.get("/app/hours")
    assert page.status_code == 200 and 'id="row-vh1"' not in page.text
    blue = csrf_of(page.text)
    page = (await browser_client.get(await _post(browser_client, blue, one="approve:vh1"))).text
    assert 'data-outcome="not_found" data-hours="vh1"' in page
    await unchanged(client, "vh1")
    # Unsigned, the queue sends the browser to sign in.
    await browser_client.post("/app/sign-out", data={"csrf": blue}, headers=SAME)
    r = await browser_client.get("/app/hours")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
