"""Organisers and teams (SPEC section 11): who may approve volunteer hours, the
approvals of distinct keys they need, the queue, and the teams report.

The attackers first: an organiser of one team deciding another's hours, the key
that logged hours approving them, one key approving twice, a volunteer app
approving. Every refusal changes nothing."""

from __future__ import annotations

from typing import Any

from tests.api.test_rules import SCHEME, publish
from tests.api.test_volunteer_hours import log_body
from tests.helpers import C, Client, balance, bearer, community

TWO_APPROVALS = SCHEME.replace("approval_required: true", "approval_required: true\n  approvals: 2")
HOURS = f"{C}/volunteer-hours"


async def key(client: Client, role: str, **scope: Any) -> tuple[str, dict[str, str]]:
    """A new key of `role` in community green: its id and its Authorization header."""
    r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
    assert r.status_code == 201, r.text
    return r.json()["id"], bearer(r.json()["key"])


async def app_key(client: Client) -> dict[str, str]:
    return (await key(client, "volunteer_app"))[1]


async def log(client: Client, headers: dict[str, str], hours_id: str, **extra: Any) -> Any:
    r = await client.post(HOURS, json=log_body(hours_id, **extra), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def unchanged(client: Client, hours_id: str, member: str = "m0", points: int = 100) -> None:
    """The hours are still pending, without approvals, and credited nothing."""
    hours = (await client.get(f"{HOURS}/{hours_id}")).json()
    assert hours["status"] == "pending" and hours["approvals"] == [], hours
    assert hours["decided_at"] is None and hours["decided_by"] is None
    assert (await client.get(f"{C}/transactions/vh:{hours_id}")).json()["status"] == "pending"
    after = await balance(client, member)
    assert after["minutes"]["balance"] == 0 and after["points"]["score"] == points
    award = f"{C}/transactions/event:vh:{hours_id}:approved:volunteer-points"
    assert (await client.get(award)).status_code == 404


def refused(r: Any, status: int = 403, code: str = "forbidden") -> None:
    assert r.status_code == status and r.json()["code"] == code, r.text


# --- the attackers -----------------------------------------------------------------


async def test_an_organiser_of_one_team_cannot_decide_or_read_anothers(client: Client) -> None:
    await community(client)
    await publish(client)
    app = await app_key(client)
    _, team_a = await key(client, "organiser", teams=["a"])
    _, team_b = await key(client, "organiser", teams=["b", "c"])
    await log(client, app, "vh1", team="a")
    await log(client, app, "vh2")  # no team: only for organisers of all teams
    for hours_id in ("vh1", "vh2"):
        for action in ("approve", "reject"):
            refused(await client.post(f"{HOURS}/{hours_id}/{action}", headers=team_b))
        refused(await client.get(f"{HOURS}/{hours_id}", headers=team_b))
        await unchanged(client, hours_id)
    queue = await client.get(HOURS, headers=team_b)
    assert queue.status_code == 200 and queue.json() == {"hours": [], "next_cursor": None}
    refused(await client.get(f"{HOURS}?team=a", headers=team_b))
    # Hours without a team are not team a's either.
    refused(await client.post(f"{HOURS}/vh2/approve", headers=team_a))
    await unchanged(client, "vh2")
    # The team's own organiser may; so may an organiser of every team.
    r = await client.post(f"{HOURS}/vh1/approve", headers=team_a)
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    report = await client.get(f"{C}/reports/teams?period=2026-11", headers=team_b)
    assert report.status_code == 200 and report.json()["teams"] == []
    assert (await client.get(HOURS, headers=team_b)).json()["hours"] == []
    _, everyone = await key(client, "organiser")
    r = await client.post(f"{HOURS}/vh2/reject", headers=everyone)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    # A decided hours of another team stays refused, not a replay.
    refused(await client.post(f"{HOURS}/vh1/approve", headers=team_b))


async def test_an_organiser_of_another_community_is_refused(client: Client) -> None:
    await community(client)
    r = await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    assert r.status_code == 201
    r = await client.post("/v1/api-keys", json={"role": "organiser", "community": "blue"})
    blue = bearer(r.json()["key"])
    await log(client, await app_key(client), "vh1")
    refused(await client.post(f"{HOURS}/vh1/approve", headers=blue))
    refused(await client.get(HOURS, headers=blue))
    await unchanged(client, "vh1")


async def test_the_logging_key_never_decides_its_own_hours(client: Client) -> None:
    await community(client)
    await publish(client)
    operator_id, operator = await key(client, "operator")
    logged = await log(client, operator, "vh1")
    assert logged["logged_by"] == operator_id
    for action in ("approve", "reject"):
        refused(await client.post(f"{HOURS}/vh1/{action}", headers=operator))
    await unchanged(client, "vh1")
    # The admin key is a key like any other.
    await log(client, {}, "vh2")  # the client's own (admin) key
    refused(await client.post(f"{HOURS}/vh2/approve"))
    await unchanged(client, "vh2")
    # Another key may.
    other_id, other = await key(client, "operator")
    r = await client.post(f"{HOURS}/vh1/approve", headers=other)
    assert r.status_code == 200 and r.json()["decided_by"] == other_id
    refused(await client.post(f"{HOURS}/vh1/approve", headers=operator))  # not even a replay


async def test_volunteer_apps_no_longer_approve_or_reject(client: Client) -> None:
    await community(client)
    app, other_app = await app_key(client), await app_key(client)
    await log(client, app, "vh1")
    for headers in (app, other_app):
        for action in ("approve", "reject"):
            refused(await client.post(f"{HOURS}/vh1/{action}", headers=headers))
    await unchanged(client, "vh1")
    # They still log, read one and read the queue.
    assert (await client.get(f"{HOURS}/vh1", headers=other_app)).status_code == 200
    assert len((await client.get(HOURS, headers=other_app)).json()["hours"]) == 1
    for role, scope in (("resident", {"member": "m0"}), ("store", {"store": "s1"})):
        _, headers = await key(client, role, **scope)
        refused(await client.post(f"{HOURS}/vh1/approve", headers=headers))
        refused(await client.get(HOURS, headers=headers))
    await unchanged(client, "vh1")


async def test_one_key_approving_twice_counts_once(client: Client) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    first_id, first = await key(client, "organiser")
    logged = await log(client, app, "vh1")
    assert logged["approvals_needed"] == 2 and logged["approvals"] == []
    r = await client.post(f"{HOURS}/vh1/approve", headers=first)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers, r.text
    once = r.json()
    assert once["status"] == "pending" and once["event"] is None
    assert [a["key_id"] for a in once["approvals"]] == [first_id]
    for _ in range(2):
        again = await client.post(f"{HOURS}/vh1/approve", headers=first)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert (
            again.json()["status"] == "pending" and again.json()["approvals"] == once["approvals"]
        )
    assert (await client.get(f"{HOURS}/vh1")).json()["approvals"] == once["approvals"]
    after = await balance(client, "m0")
    assert after["minutes"]["balance"] == 0 and after["points"]["score"] == 100
    assert (await client.get(f"{C}/transactions/vh:vh1")).json()["status"] == "pending"


# --- approvals by distinct keys ----------------------------------------------------------


async def test_two_approvals_need_two_distinct_keys(client: Client) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    first_id, first = await key(client, "organiser", teams=["a"])
    second_id, second = await key(client, "operator")
    await log(client, app, "vh1", team="a")
    assert (await client.post(f"{HOURS}/vh1/approve", headers=first)).json()["status"] == "pending"
    r = await client.post(f"{HOURS}/vh1/approve", headers=second)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers, r.text
    approved = r.json()
    assert approved["status"] == "approved" and approved["decided_by"] == second_id
    assert [a["key_id"] for a in approved["approvals"]] == [first_id, second_id]
    event = approved["event"]
    assert event["id"] == "vh:vh1:approved" and len(event["transactions"]) == 1
    after = await balance(client, "m0")
    assert after["minutes"]["balance"] == 90 and after["points"]["score"] == 100 + 15
    # A third key, once approved: a replay, nothing more.
    _, third = await key(client, "organiser")
    late = await client.post(f"{HOURS}/vh1/approve", headers=third)
    assert late.status_code == 200 and late.headers["idempotent-replayed"] == "true"
    assert late.json()["event"] is None and len(late.json()["approvals"]) == 2
    refused(await client.post(f"{HOURS}/vh1/reject", headers=third), 409, "invalid_state")
    assert (await balance(client, "m0"))["points"]["score"] == 100 + 15


async def test_one_rejection_rejects_hours_half_approved(client: Client) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    _, first = await key(client, "organiser")
    _, second = await key(client, "organiser")
    await log(client, app, "vh1")
    assert (await client.post(f"{HOURS}/vh1/approve", headers=first)).status_code == 200
    r = await client.post(f"{HOURS}/vh1/reject", headers=second)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    assert (await client.get(f"{C}/transactions/vh:vh1")).json()["status"] == "voided"
    refused(await client.post(f"{HOURS}/vh1/approve", headers=second), 409, "invalid_state")
    refused(await client.post(f"{HOURS}/vh1/approve", headers=first), 409, "invalid_state")
    after = await balance(client, "m0")
    assert after["minutes"]["balance"] == 0 and after["points"]["score"] == 100


async def test_approvals_needed_are_those_in_force_when_logged(client: Client) -> None:
    await community(client)
    await publish(client, TWO_APPROVALS)
    app = await app_key(client)
    _, organiser = await key(client, "organiser")
    assert (await log(client, app, "vh1"))["approvals_needed"] == 2
    await publish(client)  # one approval from now on
    assert (await log(client, app, "vh2"))["approvals_needed"] == 1
    r = await client.post(f"{HOURS}/vh1/approve", headers=organiser)
    assert r.json()["status"] == "pending"
    r = await client.post(f"{HOURS}/vh2/approve", headers=organiser)
    assert r.json()["status"] == "approved"


async def test_team_is_logged_and_a_repeat_with_another_team_conflicts(client: Client) -> None:
    await community(client)
    app = await app_key(client)
    logged = await log(client, app, "vh1", team="a")
    assert logged["team"] == "a" and logged["organiser"] == "org-1"
    r = await client.post(HOURS, json=log_body("vh1", team="b"), headers=app)
    refused(r, 409, "idempotency_conflict")
    r = await client.post(HOURS, json=log_body("vh1", team="a"), headers=app)
    assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
    r = await client.post(HOURS, json=log_body("vh2", team="a b"), headers=app)
    assert r.status_code == 422
    assert (await client.get(f"{HOURS}/vh2")).status_code == 404


# --- the queue -------------------------------------------------------------------------


async def test_the_queue_filters_orders_and_pages(client: Client) -> None:
    await community(client, members=3)
    app = await app_key(client)
    _, operator = await key(client, "operator")
    _, team_a = await key(client, "organiser", teams=["a"])
    plan = [
        ("vh5", "m0", "a"),
        ("vh3", "m1", "a"),
        ("vh4", "m0", "b"),
        ("vh1", "m2", None),
        ("vh2", "m1", "a"),
        ("vh6", "m0", "a"),
    ]
    for hours_id, member, team in plan:
        extra = {"team": team} if team else {}
        await log(client, app, hours_id, member=member, **extra)
    assert (await client.post(f"{HOURS}/vh3/approve", headers=operator)).status_code == 200
    assert (await client.post(f"{HOURS}/vh6/reject", headers=operator)).status_code == 200

    async def ids(query: str = "", headers: dict[str, str] | None = None) -> list[str]:
        r = await client.get(f"{HOURS}{query}", headers=headers or operator)
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        return [h["id"] for h in r.json()["hours"]]

    logged = [p[0] for p in plan]
    assert await ids() == logged  # oldest first, whatever the ids
    assert await ids("?status=pending") == ["vh5", "vh4", "vh1", "vh2"]
    assert await ids("?status=approved") == ["vh3"]
    assert await ids("?status=rejected") == ["vh6"]
    assert await ids("?team=a") == ["vh5", "vh3", "vh2", "vh6"]
    assert await ids("?team=a&status=pending&member=m1") == ["vh2"]
    assert await ids("?member=m0") == ["vh5", "vh4", "vh6"]
    assert await ids("?team=zz") == []
    assert await ids(headers=team_a) == ["vh5", "vh3", "vh2", "vh6"]
    assert await ids("?status=pending", headers=team_a) == ["vh5", "vh2"]
    assert await ids(headers=app) == logged
    approved = (await client.get(f"{HOURS}?status=approved", headers=operator)).json()["hours"]
    assert approved[0]["approvals"][0]["approved_at"] and approved[0]["team"] == "a"

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=4" if cursor is None else f"?limit=4&cursor={cursor}"
        page = (await client.get(f"{HOURS}{query}&member=m0", headers=operator)).json()
        seen += [h["id"] for h in page["hours"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["vh5", "vh4", "vh6"] and pages == 1
    seen, cursor = [], None
    while True:
        query = "?limit=2" if cursor is None else f"?limit=2&cursor={cursor}"
        page = (await client.get(f"{HOURS}{query}", headers=operator)).json()
        assert len(page["hours"]) <= 2
        seen += [h["id"] for h in page["hours"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == logged

    for query in (
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?cursor=%%%",
        "?cursor=bm9wZQ",  # base64 of "nope"
        "?cursor=WzEsMl0",  # [1,2]: not (instant, id)
        "?status=done",
    ):
        refused(await client.get(f"{HOURS}{query}", headers=operator), 422, "validation_error")
    assert len((await client.get(f"{HOURS}?limit=200", headers=operator)).json()["hours"]) == 6


# --- the teams report -------------------------------------------------------------------


async def test_the_teams_report_counts_approved_hours_and_their_points(client: Client) -> None:
    await community(client, members=3)
    await publish(client)  # volunteer-points: minutes / 6, at most 100 a month
    app = await app_key(client)
    _, operator = await key(client, "operator")
    _, team_a = await key(client, "organiser", teams=["a"])
    nov = "2026-11-20T09:00:00+08:00"
    plan: list[tuple[str, str, str | None, int, str, str]] = [
        ("a1", "m0", "a", 60, nov, "approve"),
        ("a2", "m1", "a", 90, nov, "approve"),
        ("a3", "m0", "a", 30, nov, "approve"),
        ("a4", "m2", "a", 60, nov, "reject"),
        ("a5", "m2", "a", 60, nov, ""),  # pending
        # The last minutes of November in Shanghai, and the first of December.
        ("a6", "m2", "a", 30, "2026-11-30T23:30:00+08:00", "approve"),
        ("a7", "m2", "a", 30, "2026-12-01T00:30:00+08:00", "approve"),
        ("b1", "m0", "b", 30, nov, "approve"),
        ("n1", "m1", None, 60, nov, "approve"),
    ]
    for hours_id, member, team, minutes, at, action in plan:
        extra = {"team": team} if team else {}
        await log(client, app, hours_id, member=member, minutes=minutes, started_at=at, **extra)
        if action:
            r = await client.post(f"{HOURS}/{hours_id}/{action}", headers=operator)
            assert r.status_code == 200, r.text

    async def report(period: str = "2026-11", headers: dict[str, str] | None = None) -> Any:
        r = await client.get(f"{C}/reports/teams?period={period}", headers=headers or operator)
        assert r.status_code == 200, r.text
        return r.json()

    a = {"team": "a", "hours": 4, "minutes": 210, "volunteers": 3, "points": 10 + 15 + 5 + 5}
    b = {"team": "b", "hours": 1, "minutes": 30, "volunteers": 1, "points": 5}
    none = {"team": None, "hours": 1, "minutes": 60, "volunteers": 1, "points": 10}
    assert await report() == {"period": "2026-11", "teams": [a, b, none]}
    assert await report(headers=team_a) == {"period": "2026-11", "teams": [a]}
    december = {"team": "a", "hours": 1, "minutes": 30, "volunteers": 1, "points": 5}
    assert (await report("2026-12"))["teams"] == [december]
    assert (await report("2026-10"))["teams"] == []

    # A reversed award counts back out; the hours stay approved.
    r = await client.post(f"{C}/transactions/event:vh:a2:approved:volunteer-points/reverse")
    assert r.status_code in (200, 201), r.text
    assert (await report())["teams"][0] == {**a, "points": a["points"] - 15}

    for period in ("2026-13", "2026-1", "november", "0001-01", "9999-12"):
        r = await client.get(f"{C}/reports/teams?period={period}", headers=operator)
        refused(r, 422, "validation_error")
    refused(await client.get(f"{C}/reports/teams", headers=operator), 422, "validation_error")
    refused(await client.get(f"{C}/reports/teams?period=2026-11", headers=app))
