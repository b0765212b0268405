"""The time bank across communities of a district (SPEC section 16): hours served in
one community by a member of another, credited there when approved; time transfers
between members of two communities; both sides at once, or neither."""

from __future__ import annotations

from typing import Any

from tests.api.test_rules import SCHEME, publish
from tests.helpers import Client, bearer
from tests.network_helpers import BLUE, D1, GREEN, account, key, two_communities

STARTED = "2026-11-20T09:00:00+08:00"


def hours(hours_id: str = "vh1", minutes: int = 90, **extra: Any) -> dict[str, Any]:
    return {
        "id": hours_id,
        "member": "m0",
        "member_community": "green",
        "activity": "elderly visits",
        "started_at": STARTED,
        "minutes": minutes,
        **extra,
    }


async def minutes_of(client: Client, where: str, member: str) -> int:
    r = await client.get(f"{where}/members/{member}/balance")
    assert r.status_code == 200, r.text
    value: int = r.json()["minutes"]["balance"]
    return value


async def test_hours_served_in_blue_are_credited_in_green_when_approved(client: Client) -> None:
    await two_communities(client)
    await publish(client)  # green's rules award event.minutes / 6 on volunteer.approved
    app = await key(client, role="volunteer_app", community="blue")
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours(), headers=app)
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["member_community"]) == ("pending", "green")
    assert await minutes_of(client, GREEN, "m0") == 0  # nothing until approved
    replay = await client.post(f"{BLUE}/volunteer-hours", json=hours(), headers=app)
    assert replay.status_code == 200
    organiser = await key(client, role="organiser", community="blue")
    r = await client.post(f"{BLUE}/volunteer-hours/vh1/approve", headers=organiser)
    assert r.status_code == 200, r.text
    event = r.json()["event"]
    assert event["id"] == "vh:blue:vh1:approved"  # green's rules, in green's books
    assert await minutes_of(client, GREEN, "m0") == 90
    assert await account(client, GREEN, "interchange:blue:minutes") == -90
    assert await account(client, BLUE, "interchange:green:minutes") == 90
    assert (await client.get(f"{GREEN}/members/m0/balance")).json()["points"]["score"] == 215
    again = await client.post(f"{BLUE}/volunteer-hours/vh1/approve", headers=organiser)
    assert again.status_code == 200 and again.json()["event"] is None
    assert await minutes_of(client, GREEN, "m0") == 90
    # Blue owes green the 90 minutes its team was given.
    clearing = (await client.get(f"{D1}/clearing")).json()
    nets = {(p["from"], p["to"]): p["net_minutes"] for p in clearing["positions"]}
    assert nets == {("blue", "green"): 90, ("green", "blue"): -90}


async def test_rejected_or_refused_hours_write_nothing_on_either_side(client: Client) -> None:
    await two_communities(client)
    app = await key(client, role="volunteer_app", community="blue")
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours(), headers=app)
    assert r.status_code == 201, r.text
    r = await client.post(f"{BLUE}/volunteer-hours/vh1/reject")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert await minutes_of(client, GREEN, "m0") == 0
    assert await account(client, BLUE, "interchange:green:minutes") == 0
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours("vh2", member="nobody"))
    assert r.status_code == 404
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours("vh3", member_community="blue"))
    assert r.status_code == 422
    await client.post("/v1/communities", json={"id": "red", "name": "Red"})
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours("vh4", member_community="red"))
    assert r.status_code == 403 and r.json()["code"] == "outside_district"
    assert (await client.get(f"{BLUE}/volunteer-hours/vh2")).status_code == 404


async def test_hours_without_required_approval_count_at_once(client: Client) -> None:
    await two_communities(client)
    r = await client.put(
        f"{BLUE}/rules",
        content=SCHEME.replace("approval_required: true", "approval_required: false"),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code in (200, 201), r.text
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours(minutes=60))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    assert await minutes_of(client, GREEN, "m0") == 60


async def test_time_moves_between_members_of_two_communities(client: Client) -> None:
    await two_communities(client)
    app = await key(client, role="volunteer_app", community="blue")
    r = await client.post(f"{BLUE}/volunteer-hours", json=hours(minutes=120), headers=app)
    assert r.status_code == 201, r.text
    assert (await client.post(f"{BLUE}/volunteer-hours/vh1/approve")).status_code == 200
    gift = {
        "id": "t1",
        "from_member": "m0",
        "to_member": "b1",
        "to_member_community": "blue",
        "minutes": 45,
    }
    r = await client.post(f"{GREEN}/time-transfers", json=gift)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "t1"
    assert await minutes_of(client, GREEN, "m0") == 75
    assert await minutes_of(client, BLUE, "b1") == 45
    again = await client.post(f"{GREEN}/time-transfers", json=gift)
    assert again.status_code == 200 and again.json() == r.json()
    other = await client.post(f"{GREEN}/time-transfers", json=gift | {"minutes": 5})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    # Too many, an unknown receiver, a community outside: nothing moves anywhere.
    for body, status in (
        (gift | {"id": "t2", "minutes": 76}, 409),
        (gift | {"id": "t3", "to_member": "nobody"}, 404),
        (gift | {"id": "t4", "to_member_community": "green"}, 422),
        (gift | {"id": "t5", "to_member_community": "nowhere"}, 404),
    ):
        r = await client.post(f"{GREEN}/time-transfers", json=body)
        assert r.status_code == status, (body, r.text)
    assert await minutes_of(client, GREEN, "m0") == 75
    assert await minutes_of(client, BLUE, "b1") == 45
    # A resident gives its own minutes, not another's.
    r = await client.post(
        "/v1/api-keys", json={"role": "resident", "community": "green", "member": "m0"}
    )
    mine = bearer(r.json()["key"])
    r = await client.post(
        f"{GREEN}/time-transfers", json=gift | {"id": "t6", "minutes": 5}, headers=mine
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{GREEN}/time-transfers", json=gift | {"id": "t7", "from_member": "m1"}, headers=mine
    )
    assert r.status_code in (403, 404)
    assert (await client.get(f"{D1}/audit/verify")).json()["ok"] is True
