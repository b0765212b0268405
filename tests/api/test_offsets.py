"""Property-fee offsets: quote, hold, apply, cancel, expiry, every cap, scoping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from service.db import create_pool
from service.ledger.service import expire_due
from tests.helpers import OFFSETS, C, Client, award, balance, bearer, community


def offset(
    oid: str, points: int, member: str = "m0", household: str = "h0", **extra: Any
) -> dict[str, Any]:
    return {
        "id": oid,
        "member": member,
        "household": household,
        "bill_amount_fen": extra.pop("bill", 100_000),
        "points": points,
        **extra,
    }


async def rules(client: Client, **offset_caps: int) -> None:
    doc = {"baseline": 100, "fen_per_point": 10, "offset": offset_caps}
    r = await client.put(f"{C}/rules", json=doc)
    assert r.status_code in (200, 201), r.text


async def refused(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(OFFSETS, json=body)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert (await client.get(f"{OFFSETS}/{body['id']}")).status_code == 404, "a refusal left a row"
    return problem


async def key(client: Client, **scope: str) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"community": "green", **scope})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def test_quote_then_apply_at_once_and_replay(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    q = await client.post(
        f"{OFFSETS}/quote", json={"member": "m0", "household": "h0", "bill_amount_fen": 10_000}
    )
    assert q.status_code == 200, q.text
    assert q.json() == {
        "redeemable_points": 50,
        "max_points": 50,
        "max_offset_fen": 500,
        "fen_per_point": 10,
        "min_points": 1,
        "household_left_fen": None,
        "mandate_required": False,  # an operator's quote
        "mandate": None,
    }
    r = await client.post(OFFSETS, json=offset("bill-1", 20))
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["points"], body["offset_fen"]) == ("applied", 20, 200)
    assert body["transaction_id"] == "offset:bill-1"
    assert (await balance(client, "m0"))["points"]["score"] == 130
    again = await client.post(OFFSETS, json=offset("bill-1", 20))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    other = await client.post(OFFSETS, json=offset("bill-1", 21))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    tx = (await client.get(f"{C}/transactions/offset:bill-1")).json()
    assert tx["kind"] == "offset"
    assert tx["postings"][0]["destination"] == "property:acme:offsets"


async def test_hold_apply_then_cancel_gives_points_back(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    r = await client.post(OFFSETS, json=offset("bill-1", 30, hold=True, hold_ttl_s=600))
    assert r.status_code == 201 and r.json()["status"] == "held"
    assert r.json()["expires_at"] is not None
    assert (await balance(client, "m0"))["points"] == {
        "score": 150,
        "held": 30,
        "baseline": 100,
        "redeemable": 20,
        "expiring": [],
    }
    applied = await client.post(f"{OFFSETS}/bill-1/apply")
    assert applied.status_code == 200 and applied.json()["status"] == "applied"
    again = await client.post(f"{OFFSETS}/bill-1/apply")
    assert again.headers["idempotent-replayed"] == "true"
    assert (await balance(client, "m0"))["points"]["score"] == 120
    cancelled = await client.post(f"{OFFSETS}/bill-1/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelled_at"] is not None
    assert (await balance(client, "m0"))["points"]["score"] == 150
    again = await client.post(f"{OFFSETS}/bill-1/cancel")
    assert again.headers["idempotent-replayed"] == "true"
    refused_apply = await client.post(f"{OFFSETS}/bill-1/apply")
    assert refused_apply.status_code == 409 and refused_apply.json()["code"] == "invalid_state"
    # The replay of the create still returns what the create returned.
    replay = await client.post(OFFSETS, json=offset("bill-1", 30, hold=True, hold_ttl_s=600))
    assert replay.status_code == 200 and replay.json()["status"] == "held"


async def test_cancel_a_hold_voids_it(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    await client.post(OFFSETS, json=offset("bill-1", 30, hold=True))
    r = await client.post(f"{OFFSETS}/bill-1/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await balance(client, "m0"))["points"]["held"] == 0
    tx = (await client.get(f"{C}/transactions/offset:bill-1")).json()
    assert (tx["status"], tx["void_reason"]) == ("voided", "cancelled")


async def test_redeemable_cap(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 15)
    problem = await refused(client, offset("bill-1", 16))
    assert problem["code"] == "insufficient_points"
    assert (problem["cap"], problem["available"], problem["requested"]) == ("redeemable", 15, 16)
    assert (await client.post(OFFSETS, json=offset("bill-1", 15))).status_code == 201


async def test_min_points_cap(client: Client) -> None:
    await community(client)
    await rules(client, min_points=10)
    await award(client, "a1", "m0", 50)
    problem = await refused(client, offset("bill-1", 9))
    assert (problem["code"], problem["cap"]) == ("cap_exceeded", "min_points")
    assert (await client.post(OFFSETS, json=offset("bill-1", 10))).status_code == 201
    quote = await client.post(
        f"{OFFSETS}/quote", json={"member": "m0", "household": "h0", "bill_amount_fen": 10_000}
    )
    assert quote.json()["max_points"] == 40
    await client.post(
        f"{C}/transactions",
        json={
            "id": "spend",
            "postings": [
                {
                    "source": "member:m0:points",
                    "destination": "store:s1:redemptions",
                    "asset": "points",
                    "amount": 35,
                }
            ],
        },
    )
    quote = await client.post(
        f"{OFFSETS}/quote", json={"member": "m0", "household": "h0", "bill_amount_fen": 10_000}
    )
    assert (quote.json()["redeemable_points"], quote.json()["max_points"]) == (5, 0)


async def test_a_repeat_after_the_caps_tightened_is_still_a_replay(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    first = await client.post(OFFSETS, json=offset("bill-1", 10))
    assert first.status_code == 201, first.text
    await rules(client, min_points=20)
    again = await client.post(OFFSETS, json=offset("bill-1", 10))
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = await client.post(OFFSETS, json=offset("bill-1", 11))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    problem = await refused(client, offset("bill-2", 10))
    assert (problem["code"], problem["cap"]) == ("cap_exceeded", "min_points")


async def test_bill_percent_cap(client: Client) -> None:
    await community(client)
    await rules(client, max_bill_percent=30)
    await award(client, "a1", "m0", 100)
    # 30 % of 1000 fen is 300 fen: 30 points at 10 fen each.
    problem = await refused(client, offset("bill-1", 31, bill=1000))
    assert (problem["code"], problem["cap"], problem["max_points"]) == (
        "cap_exceeded",
        "max_bill_percent",
        30,
    )
    r = await client.post(OFFSETS, json=offset("bill-1", 30, bill=1000))
    assert r.status_code == 201 and r.json()["offset_fen"] == 300


async def test_an_offset_never_exceeds_its_bill(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 100)
    problem = await refused(client, offset("bill-1", 11, bill=105))
    assert (problem["code"], problem["cap"]) == ("cap_exceeded", "bill_amount_fen")
    assert (await client.post(OFFSETS, json=offset("bill-1", 10, bill=105))).status_code == 201


async def test_household_yearly_cap_spans_members_and_frees_on_cancel(client: Client) -> None:
    await community(client, members=2, households=1)
    await rules(client, max_fen_per_household_per_year=600)
    await award(client, "a0", "m0", 100)
    await award(client, "a1", "m1", 100)
    assert (await client.post(OFFSETS, json=offset("b1", 40))).status_code == 201
    assert (
        await client.post(OFFSETS, json=offset("b2", 10, member="m1", hold=True))
    ).status_code == 201
    problem = await refused(client, offset("b3", 11, member="m1"))
    assert (problem["code"], problem["cap"], problem["max_points"]) == (
        "cap_exceeded",
        "max_fen_per_household_per_year",
        10,
    )
    quote = await client.post(
        f"{OFFSETS}/quote", json={"member": "m1", "household": "h0", "bill_amount_fen": 100_000}
    )
    assert (quote.json()["max_points"], quote.json()["household_left_fen"]) == (10, 100)
    assert (await client.post(f"{OFFSETS}/b1/cancel")).status_code == 200
    assert (await client.post(OFFSETS, json=offset("b3", 50, member="m1"))).status_code == 201


async def test_all_caps_together_name_the_first_that_bites(client: Client) -> None:
    await community(client)
    await rules(client, min_points=10, max_bill_percent=50, max_fen_per_household_per_year=1000)
    await award(client, "a1", "m0", 200)
    assert (await refused(client, offset("x", 5, bill=1000)))["cap"] == "min_points"
    assert (await refused(client, offset("x", 60, bill=1000)))["cap"] == "max_bill_percent"
    assert (await client.post(OFFSETS, json=offset("b1", 50, bill=1000))).status_code == 201
    assert (await client.post(OFFSETS, json=offset("b2", 45, bill=1000))).status_code == 201
    # 950 of 1000 fen used: 5 points left, below min_points, so the yearly cap bites.
    problem = await refused(client, offset("x", 10, bill=1000))
    assert problem["cap"] == "max_fen_per_household_per_year"
    quote = await client.post(
        f"{OFFSETS}/quote", json={"member": "m0", "household": "h0", "bill_amount_fen": 1000}
    )
    assert quote.json()["max_points"] == 0


async def test_expired_hold_is_voided_and_frees_the_household_cap(client: Client, dsn: str) -> None:
    await community(client)
    await rules(client, max_fen_per_household_per_year=300)
    await award(client, "a1", "m0", 100)
    assert (
        await client.post(OFFSETS, json=offset("b1", 30, hold=True, hold_ttl_s=60))
    ).status_code == 201
    assert (await refused(client, offset("b2", 30)))["cap"] == "max_fen_per_household_per_year"
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        assert await expire_due(pool, now=datetime.now(UTC) + timedelta(seconds=61)) == 1
    finally:
        await pool.close()
    got = (await client.get(f"{OFFSETS}/b1")).json()
    assert got["status"] == "expired" and got["cancelled_at"] is not None
    assert (await balance(client, "m0"))["points"]["held"] == 0
    r = await client.post(f"{OFFSETS}/b1/apply")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    assert (await client.post(OFFSETS, json=offset("b2", 30))).status_code == 201


async def test_property_key_acts_only_for_its_company(client: Client) -> None:
    await community(client, members=2, households=2)  # h0/m0: acme; h1/m1: other
    await award(client, "a0", "m0", 50)
    await award(client, "a1", "m1", 50)
    acme = await key(client, role="property", property_company="acme")
    other = await key(client, role="property", property_company="other")
    store = await key(client, role="store", store="s1")
    # The residents' mandates, recorded by the operator.
    for member, company in (("m0", "acme"), ("m1", "other")):
        r = await client.put(
            f"{C}/members/{member}/mandates/{company}", json={"max_points_per_bill": 10}
        )
        assert r.status_code == 200, r.text
    r = await client.post(OFFSETS, json=offset("b1", 10), headers=other)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post(
        f"{OFFSETS}/quote",
        json={"member": "m0", "household": "h0", "bill_amount_fen": 100},
        headers=other,
    )
    assert r.status_code == 404
    assert (await client.post(OFFSETS, json=offset("b1", 10), headers=acme)).status_code == 201
    assert (
        await client.post(OFFSETS, json=offset("b2", 10, "m1", "h1"), headers=other)
    ).status_code == 201
    assert (await client.get(f"{OFFSETS}/b1", headers=other)).status_code == 404
    assert (await client.post(f"{OFFSETS}/b1/cancel", headers=other)).status_code == 404
    assert (await client.post(OFFSETS, json=offset("b3", 10), headers=store)).status_code == 403
    listed = (await client.get(OFFSETS, headers=acme)).json()
    assert [o["id"] for o in listed["offsets"]] == ["b1"]
    assert listed["totals"]["applied_points"] == 10
    r = await client.get(OFFSETS, params={"property_company": "other"}, headers=acme)
    assert r.status_code == 403
    assert (await client.get(f"{C}/members/m1/balance", headers=acme)).status_code == 404


async def test_list_has_settlement_totals_and_pages(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 100)
    for i in range(5):
        body = offset(f"b{i}", 10 + i, hold=i % 2 == 1)
        assert (await client.post(OFFSETS, json=body)).status_code == 201
    await client.post(f"{OFFSETS}/b0/cancel")
    page = (await client.get(OFFSETS, params={"limit": 2, "property_company": "acme"})).json()
    assert [o["id"] for o in page["offsets"]] == ["b4", "b3"]
    assert page["totals"] == {
        "applied_count": 2,
        "applied_points": 26,
        "applied_fen": 260,
        "held_count": 2,
        "held_points": 24,
        "held_fen": 240,
    }
    rest = (await client.get(OFFSETS, params={"limit": 5, "cursor": page["next_cursor"]})).json()
    assert [o["id"] for o in rest["offsets"]] == ["b2", "b1", "b0"]
    assert rest["next_cursor"] is None
    later = (await client.get(OFFSETS, params={"from": "2999-01-01T00:00:00Z"})).json()
    assert later["offsets"] == [] and later["totals"]["applied_count"] == 0


async def test_validation(client: Client) -> None:
    await community(client, members=2, households=2)
    await award(client, "a1", "m0", 100)
    for bad in (
        offset("b1", 10.0),
        offset("b1", 0),
        offset("b1", "10"),
        offset("b1", 10, bill=-1),
        offset("b1", 10, hold_ttl_s=60),
        offset("b1", 10, household="h1"),
        {**offset("b1", 10), "extra": 1},
        offset("b:1", 10),
    ):
        r = await client.post(OFFSETS, json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await client.post(OFFSETS, json=offset("b1", 10, member="nobody"))).status_code == 404
    assert (await client.get(f"{OFFSETS}/nope")).status_code == 404
    assert (await client.post(f"{OFFSETS}/nope/apply")).status_code == 404
