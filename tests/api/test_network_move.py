"""Moving house within a district (SPEC section 16): points above the baseline and
every minute go with the member, lots with their expiry, and the old membership is
closed with its history; once per id; refusals change nothing on either side."""

from __future__ import annotations

from typing import Any

from tests.helpers import Client
from tests.network_helpers import BLUE, D1, GREEN, account, two_communities

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
