"""Time bank: minutes move between members and convert to points, through the ledger."""

from __future__ import annotations

from typing import Any

from tests.helpers import C, Client, balance, bearer, community, transfer

TIMEBANK = "system:timebank:minutes"


async def _bank(client: Client, tx_id: str, member: str, minutes: int) -> None:
    body = transfer(tx_id, TIMEBANK, f"member:{member}:minutes", minutes, asset="minutes")
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


def _gift(tx_id: str, minutes: int, **extra: Any) -> dict[str, Any]:
    return {"id": tx_id, "from_member": "m0", "to_member": "m1", "minutes": minutes, **extra}


async def test_a_time_transfer_moves_minutes_once(client: Client) -> None:
    await community(client)
    await _bank(client, "b1", "m0", 60)
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", 25, memo="shopping help"))
    assert r.status_code == 201, r.text
    tx = r.json()
    assert tx["kind"] == "time_transfer" and tx["memo"] == "shopping help"
    assert tx["postings"] == [
        {"source": "member:m0:minutes", "destination": "member:m1:minutes", "asset": "minutes",
         "amount": 25}
    ]  # fmt: skip
    assert (await balance(client, "m0"))["minutes"] == {"balance": 35, "held": 0, "expiring": []}
    assert (await balance(client, "m1"))["minutes"] == {"balance": 25, "held": 0, "expiring": []}
    again = await client.post(f"{C}/time-transfers", json=_gift("g1", 25, memo="shopping help"))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    other = await client.post(f"{C}/time-transfers", json=_gift("g1", 5))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert (await balance(client, "m0"))["minutes"]["balance"] == 35
    page = (await client.get(f"{C}/members/m1/statement", params={"asset": "minutes"})).json()
    assert [(e["transaction_id"], e["amount"], e["kind"]) for e in page["entries"]] == [
        ("g1", 25, "time_transfer")
    ]


async def test_time_transfers_refused_whole_and_changing_nothing(client: Client) -> None:
    await community(client, members=3)
    await _bank(client, "b1", "m0", 10)
    over = await client.post(f"{C}/time-transfers", json=_gift("g1", 11))
    assert over.status_code == 409 and over.json()["code"] == "insufficient_points"
    assert over.json()["available"] == 10 and over.json()["requested"] == 11
    same = await client.post(f"{C}/time-transfers", json={**_gift("g2", 1), "to_member": "m0"})
    assert same.status_code == 422 and same.json()["code"] == "validation_error"
    unknown = await client.post(f"{C}/time-transfers", json={**_gift("g3", 1), "to_member": "x9"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    for bad in (_gift("g4", 0), _gift("g5", 1.5), _gift("g6", 1, extra=1), _gift("a b", 1)):
        r = await client.post(f"{C}/time-transfers", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await balance(client, "m0"))["minutes"] == {"balance": 10, "held": 0, "expiring": []}
    for tx_id in ("g1", "g2", "g3"):
        assert (await client.get(f"{C}/transactions/{tx_id}")).status_code == 404


async def test_a_resident_gives_only_its_own_minutes(client: Client) -> None:
    await community(client)
    await _bank(client, "b1", "m0", 30)
    await _bank(client, "b2", "m1", 30)
    r = await client.post(
        "/v1/api-keys", json={"role": "resident", "community": "green", "member": "m0"}
    )
    assert r.status_code == 201, r.text
    resident = bearer(r.json()["key"])
    own = await client.post(f"{C}/time-transfers", json=_gift("g1", 5), headers=resident)
    assert own.status_code == 201, own.text
    theirs = {"id": "g2", "from_member": "m1", "to_member": "m0", "minutes": 5}
    r = await client.post(f"{C}/time-transfers", json=theirs, headers=resident)
    # Not its proxy: as for any read of another member, it learns nothing of m1.
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post(
        f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 60}, headers=resident
    )
    assert r.status_code == 403
    assert (await balance(client, "m1"))["minutes"]["balance"] == 35


async def test_a_conversion_turns_minutes_into_points_at_the_rule_sets_rate(
    client: Client,
) -> None:
    await community(client)
    await _bank(client, "b1", "m0", 90)
    r = await client.post(f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 60})
    assert r.status_code == 201, r.text
    tx = r.json()
    in_force = (await client.get(f"{C}/rules")).json()
    assert in_force["document"]["time_bank"]["points_per_hour"] == 10
    assert tx["kind"] == "conversion" and tx["rule_version"] == in_force["version"]
    assert (await balance(client, "m0"))["minutes"]["balance"] == 30
    assert (await balance(client, "m0"))["points"]["score"] == 110
    replay = await client.post(f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 60})
    assert replay.status_code == 200 and replay.json()["id"] == "c1"
    # Only whole points: at 10 an hour, minutes come in sixes.
    odd = await client.post(f"{C}/conversions", json={"id": "c2", "member": "m0", "minutes": 7})
    assert odd.status_code == 422 and "multiple of 6 minutes" in odd.json()["detail"]
    short = await client.post(f"{C}/conversions", json={"id": "c3", "member": "m0", "minutes": 36})
    assert short.status_code == 409 and short.json()["code"] == "insufficient_points"
    assert (await balance(client, "m0"))["minutes"]["balance"] == 30
    assert (await balance(client, "m0"))["points"]["score"] == 110
    system = (await client.get(f"{C}/accounts/system:conversion:minutes")).json()
    assert system["posted"] == 60


async def test_conversions_are_off_when_the_rate_is_zero(client: Client) -> None:
    await community(client)
    await _bank(client, "b1", "m0", 60)
    active = (await client.get(f"{C}/rules")).json()
    document = {
        **active["document"],
        "time_bank": {"approval_required": True, "points_per_hour": 0},
    }
    r = await client.put(f"{C}/rules", json=document)
    assert r.status_code in (200, 201), r.text
    off = await client.post(f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 60})
    assert off.status_code == 409 and off.json()["code"] == "invalid_state"
    assert (await balance(client, "m0"))["minutes"]["balance"] == 60


async def test_a_repeated_conversion_answers_with_the_original_after_the_rate_changed(
    client: Client,
) -> None:
    """A conversion made at 10 points an hour, repeated after the rate moved to 7 (at
    which its minutes are no whole number of points) and then to 0 (conversions
    off): the repeat is a replay of the original, at its own rate, and changes
    nothing; a different request under the same id is still a conflict."""
    await community(client)
    await _bank(client, "b1", "m0", 90)
    first = await client.post(f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 30})
    assert first.status_code == 201, first.text
    active = (await client.get(f"{C}/rules")).json()
    for rate in (7, 0):
        document = {
            **active["document"],
            "time_bank": {"approval_required": True, "points_per_hour": rate},
        }
        published = await client.put(f"{C}/rules", json=document)
        assert published.status_code in (200, 201), published.text
        again = await client.post(
            f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 30}
        )
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        other = await client.post(
            f"{C}/conversions", json={"id": "c1", "member": "m0", "minutes": 60}
        )
        assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
        new = await client.post(
            f"{C}/conversions", json={"id": "c9", "member": "m0", "minutes": 30}
        )
        assert new.status_code == (422 if rate == 7 else 409), new.text
    assert (await balance(client, "m0"))["minutes"]["balance"] == 60
    assert (await balance(client, "m0"))["points"]["score"] == 105
