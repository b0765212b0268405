"""Moving house within a district (SPEC section 16): points above the baseline and
every minute go with the member, lots with their expiry, and the old membership is
closed with its history; once per id; refusals change nothing on either side."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client
from tests.network_helpers import BLUE, D1, GREEN, account, basket, key, two_communities

MOVE = f"{GREEN}/members/m0/move"


def move(**extra: Any) -> dict[str, Any]:
    return {"id": "mv1", "to_community": "blue", "to_member": "n0", "household": "h0"} | extra


async def _credit(client: Client, tx: str, asset: str, amount: int, expires: str | None) -> None:
    source = "system:issuance:points" if asset == "points" else "system:timebank:minutes"
    body: dict[str, Any] = {
        "id": tx,
        "postings": [
            {
                "source": source,
                "destination": f"member:m0:{asset}",
                "asset": asset,
                "amount": amount,
            }
        ],
    }
    if expires is not None:
        body["lot"] = {"expires_at": expires}
    r = await client.post(f"{GREEN}/transactions", json=body)
    assert r.status_code == 201, r.text


async def _open_lots(
    client: Client, where: str, member: str, asset: str
) -> list[tuple[int, str | None]]:
    r = await client.get(f"{where}/members/{member}/lots", params={"asset": asset})
    assert r.status_code == 200, r.text
    return sorted(((lot["remaining"], lot["expires_at"]) for lot in r.json()["lots"]), key=str)


async def test_a_member_moves_with_its_points_minutes_and_lots(client: Client) -> None:
    await two_communities(client)
    await _credit(client, "soon", "points", 30, "2027-06-30T16:00:00Z")
    await _credit(client, "later", "points", 20, "2027-12-31T16:00:00Z")
    await _credit(client, "hours", "minutes", 40, None)
    r = await client.post(MOVE, json=move())
    assert r.status_code == 201, r.text
    moved = r.json()
    assert (moved["carried"]["points"], moved["carried"]["minutes"]) == (150, 40)
    assert moved["closed"]["member"]["status"] == "closed"
    assert moved["member"]["id"] == "n0" and moved["to_community"] == "blue"
    # In blue: blue's baseline, plus what was carried, lots expiring as they did.
    balance = (await client.get(f"{BLUE}/members/n0/balance")).json()
    assert (balance["points"]["score"], balance["minutes"]["balance"]) == (250, 40)
    lots = await _open_lots(client, BLUE, "n0", "points")
    assert (30, "2027-06-30T16:00:00Z") in lots and (20, "2027-12-31T16:00:00Z") in lots
    assert sum(n for n, _ in lots) == 250
    # In green: the baseline stays with the closed membership; its history is kept.
    old = (await client.get(f"{GREEN}/members/m0/balance")).json()
    assert (old["points"]["score"], old["minutes"]["balance"]) == (100, 0)
    statement = (await client.get(f"{GREEN}/members/m0/statement")).json()["entries"]
    assert len(statement) >= 4
    assert await account(client, GREEN, "interchange:blue:points") == 150
    assert await account(client, BLUE, "interchange:green:points") == -150
    assert await account(client, BLUE, "interchange:green:minutes") == -40
    # Once: a replay answers as the move did; another body under the id is a conflict.
    again = await client.post(MOVE, json=move())
    assert again.status_code == 200 and again.json() == moved
    other = await client.post(MOVE, json=move(to_member="n9"))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    late = await client.post(MOVE, json=move(id="mv2", to_member="n9"))
    assert late.status_code == 409 and late.json()["code"] == "member_closed"
    # Green owes blue what it carried.
    clearing = (await client.get(f"{D1}/clearing")).json()["positions"]
    assert {(p["from"], p["net_points"], p["net_minutes"]) for p in clearing} == {
        ("green", 150, 40),
        ("blue", -150, -40),
    }


async def test_refused_moves_change_nothing(client: Client) -> None:
    await two_communities(client)
    await client.post("/v1/communities", json={"id": "red", "name": "Red"})
    for body, status, code in (
        (move(to_member="b0"), 409, "invalid_state"),  # already a member there
        (move(household="nowhere"), 404, "not_found"),
        (move(to_community="red"), 403, "outside_district"),
        (move(to_community="green"), 422, "validation_error"),
        (move(to_community="nowhere"), 404, "not_found"),
    ):
        r = await client.post(MOVE, json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    r = await client.post(f"{GREEN}/members/nobody/move", json=move())
    assert r.status_code == 404
    assert (await client.get(f"{GREEN}/members/m0")).json()["status"] == "active"
    assert (await client.get(f"{GREEN}/members/m0/balance")).json()["points"]["score"] == 200
    assert (await client.get(f"{BLUE}/members/n0")).status_code == 404
    assert await account(client, GREEN, "interchange:blue:points") == 0


# What a move carries, lot by lot, under rule sets with expiry policies (SPEC section 9).

GREEN_RULES = """\
baseline: 100
expiry:
  points: year_end_plus_one
rules:
  - id: help
    on: helped
    award: event.points
    reason: 帮助邻居
"""
# Blue's own policy differs: a lot carried under it would expire sooner.
BLUE_RULES = """\
baseline: 50
expiry:
  points: {months: 1}
  minutes: {months: 1}
"""
YAML = {"Content-Type": "application/yaml"}


async def _publish(client: Client, where: str, text: str) -> None:
    params = {"effective_from": "2025-01-01T00:00:00+08:00"}
    r = await client.put(f"{where}/rules", params=params, content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text


async def _helped(client: Client, ident: str, occurred_at: str, points: int) -> None:
    body = {
        "id": ident,
        "type": "helped",
        "member": "m0",
        "occurred_at": occurred_at,
        "attributes": {"points": points},
    }
    r = await client.post(f"{GREEN}/events", json=body)
    assert r.status_code == 201, r.text


async def _lots(client: Client, where: str, member: str, asset: str) -> list[dict[str, Any]]:
    """The member's open lots in the order debits take them (the API's order)."""
    r = await client.get(f"{where}/members/{member}/lots", params={"asset": asset})
    assert r.status_code == 200, r.text
    lots: list[dict[str, Any]] = r.json()["lots"]
    return lots


def _taken(lots: list[dict[str, Any]], amount: int) -> list[tuple[int, str, str | None]]:
    """What a debit of `amount` takes from `lots` (in the debit's order): per lot, the
    amount, when it was earned and when it expires."""
    out = []
    for lot in lots:
        take = min(amount, lot["remaining"])
        if take:
            out.append((take, lot["earned_at"], lot["expires_at"]))
        amount -= take
    assert amount == 0
    return out


def _terms(lots: list[dict[str, Any]]) -> list[tuple[int, str, str | None]]:
    return sorted(((x["remaining"], x["earned_at"], x["expires_at"]) for x in lots), key=str)


async def test_carried_lots_keep_when_they_were_earned_and_when_they_expire(
    client: Client,
) -> None:
    await two_communities(client)
    await _publish(client, GREEN, GREEN_RULES)
    await _publish(client, BLUE, BLUE_RULES)
    await _helped(client, "e1", "2025-03-01T10:00:00+08:00", 30)  # expires as 2027 begins
    await _helped(client, "e2", "2026-06-01T10:00:00+08:00", 20)  # expires as 2028 begins
    await _credit(client, "hours", "minutes", 40, "2027-03-31T16:00:00Z")
    await _credit(client, "more-hours", "minutes", 15, None)  # green's minutes never expire
    # Oil for 40: the soonest-expiring lots go first (all of e1's, 10 of e2's).
    r = await client.post(f"{GREEN}/redemptions", json=basket("r1", "m0", None, oil=2))
    assert r.status_code == 201, r.text
    points_before = await _lots(client, GREEN, "m0", "points")
    minutes_before = await _lots(client, GREEN, "m0", "minutes")
    balance = (await client.get(f"{GREEN}/members/m0/balance")).json()
    assert balance["points"]["redeemable"] == 100 + 100 + 50 - 40 - 100
    expected_points = _taken(points_before, 110)
    expected_minutes = _taken(minutes_before, 55)
    assert expected_points[0] == (10, "2026-06-01T02:00:00Z", "2027-12-31T16:00:00Z")

    r = await client.post(MOVE, json=move())
    assert r.status_code == 201, r.text
    carried = r.json()["carried"]
    assert (carried["points"], carried["minutes"]) == (110, 55)
    shown = sorted(
        ((x["amount"], x["earned_at"], x["expires_at"]) for x in carried["lots"]), key=str
    )
    assert shown == sorted(expected_points + expected_minutes, key=str)
    # In blue: blue's baseline opening lot, and the carried lots as they were in green.
    new_points = await _lots(client, BLUE, "n0", "points")
    opening = [x for x in new_points if x["transaction_id"] == "n0:opening"]
    assert [(x["remaining"], x["expires_at"]) for x in opening] == [(50, None)]
    assert _terms([x for x in new_points if x not in opening]) == sorted(expected_points, key=str)
    assert _terms(await _lots(client, BLUE, "n0", "minutes")) == sorted(expected_minutes, key=str)
    balance = (await client.get(f"{BLUE}/members/n0/balance")).json()
    assert (balance["points"]["score"], balance["minutes"]["balance"]) == (160, 55)
    assert balance["points"]["redeemable"] == 110
    # In green: the baseline's worth of lots stays with the closed membership.
    left = await _lots(client, GREEN, "m0", "points")
    assert sum(x["remaining"] for x in left) == 100
    assert all(x["expires_at"] is None for x in left)
    assert await _lots(client, GREEN, "m0", "minutes") == []
    statement = (await client.get(f"{GREEN}/members/m0/statement")).json()["entries"]
    assert any(e["amount"] == -110 for e in statement), statement
    audit = await client.get(f"{D1}/audit/verify")
    assert audit.status_code == 200 and audit.json()["ok"], audit.text


async def test_a_pending_hold_refuses_the_move_and_changes_nothing(client: Client) -> None:
    await two_communities(client)
    hold = {
        "id": "hold-1",
        "postings": [
            {
                "source": "member:m0:points",
                "destination": "system:penalties:points",
                "asset": "points",
                "amount": 10,
            }
        ],
        "pending": {"ttl_s": 600},
    }
    r = await client.post(f"{GREEN}/transactions", json=hold)
    assert r.status_code == 201, r.text
    r = await client.post(MOVE, json=move())
    assert (r.status_code, r.json()["code"]) == (409, "invalid_state"), r.text
    assert "hold-1" in r.json()["detail"]
    assert (await client.get(f"{GREEN}/members/m0")).json()["status"] == "active"
    points = (await client.get(f"{GREEN}/members/m0/balance")).json()["points"]
    assert (points["score"], points["held"]) == (200, 10)
    assert (await client.get(f"{BLUE}/members/n0")).status_code == 404
    assert await account(client, GREEN, "interchange:blue:points") == 0
    assert await account(client, BLUE, "interchange:green:points") == 0
    # Once the hold is settled, the same request moves the member.
    r = await client.post(f"{GREEN}/transactions/hold-1/void")
    assert r.status_code == 200, r.text
    r = await client.post(MOVE, json=move())
    assert r.status_code == 201, r.text
    assert r.json()["carried"]["points"] == 100


async def test_a_move_with_nothing_to_carry_is_made_once(client: Client) -> None:
    await two_communities(client)
    path = f"{GREEN}/members/m1/move"
    body = move(to_member="n1")
    r = await client.post(path, json=body)
    assert r.status_code == 201, r.text
    moved = r.json()
    assert moved["carried"] == {"points": 0, "minutes": 0, "lots": []}
    assert moved["closed"]["member"]["status"] == "closed"
    assert moved["closed"]["transaction"] is None
    assert (await client.get(f"{BLUE}/members/n1/balance")).json()["points"]["score"] == 100
    again = await client.post(path, json=body)
    assert again.status_code == 200 and again.json() == moved
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post(path, json=move(to_member="n2"))
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")
    assert (await client.get(f"{BLUE}/members/n2")).status_code == 404


async def test_a_move_id_names_one_move_in_its_community(client: Client) -> None:
    await two_communities(client)
    r = await client.post(MOVE, json=move())
    assert r.status_code == 201, r.text
    for body in (move(to_member="n1"), move()):  # the same body, for another member
        r = await client.post(f"{GREEN}/members/m1/move", json=body)
        assert (r.status_code, r.json()["code"]) == (409, "idempotency_conflict"), r.text
    assert (await client.get(f"{GREEN}/members/m1")).json()["status"] == "active"
    assert (await client.get(f"{BLUE}/members/n1")).status_code == 404


async def test_who_may_move_a_member(client: Client) -> None:
    """An operator of the member's community (or an admin) moves it out, into another
    community of the district; the other community's operator and a till may not."""
    await two_communities(client)
    blue_operator = await key(client, role="operator", community="blue")
    till = await key(client, role="store", community="green", store="s1")
    for headers in (blue_operator, till):
        r = await client.post(MOVE, json=move(), headers=headers)
        assert r.status_code == 403, r.text
    assert (await client.get(f"{BLUE}/members/n0")).status_code == 404
    green_operator = await key(client, role="operator", community="green")
    r = await client.post(MOVE, json=move(), headers=green_operator)
    assert r.status_code == 201, r.text
    assert r.json()["member"]["id"] == "n0"
