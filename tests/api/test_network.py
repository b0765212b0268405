"""A district network (SPEC section 16): districts, district-wide stores, redemptions
by members of another community and their returns, both sides at once; clearing,
settlements, the district operator's scope and the audit's mirror checks."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import openpyxl

from service.db import q
from service.ledger import audit
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting, RuleParams
from tests.helpers import ISSUANCE, C, Client, balance
from tests.network_helpers import (
    BLUE,
    D1,
    GREEN,
    account,
    award_blue,
    basket,
    key,
    spend_code,
    two_communities,
)


async def test_a_district_groups_communities_once(client: Client) -> None:
    await two_communities(client)
    r = await client.get(D1)
    assert r.status_code == 200 and r.json()["communities"] == ["blue", "green"]
    again = await client.post(
        "/v1/districts", json={"id": "d1", "name": "Taihe", "communities": ["green", "blue"]}
    )
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/districts", json={"id": "d1", "name": "Elsewhere"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert (await client.get(f"{C}")).json()["district"] == "d1"
    # A community belongs to one district.
    r = await client.post("/v1/districts", json={"id": "d2", "name": "Other", "communities": []})
    assert r.status_code == 201
    r = await client.put("/v1/districts/d2/communities/green")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    r = await client.post("/v1/communities", json={"id": "red", "name": "Red"})
    assert (await client.put("/v1/districts/d2/communities/red")).json()["communities"] == ["red"]
    assert (await client.put("/v1/districts/d2/communities/red")).status_code == 200
    assert (await client.put("/v1/districts/d2/communities/nowhere")).status_code == 404
    assert (await client.put("/v1/districts/zz/communities/red")).status_code == 404
    r = await client.post("/v1/districts", json={"id": "d3", "name": "x", "communities": ["red"]})
    assert r.status_code == 409
    assert (await client.get("/v1/districts/d3")).status_code == 404  # nothing was made
    assert (await client.get("/v1/districts/BAD!")).status_code == 422


async def test_a_member_redeems_at_another_communitys_store(client: Client) -> None:
    await two_communities(client)
    till = await key(client, role="store", community="blue", store="s1")
    code = await spend_code(client, GREEN, "m0", 50)
    body = basket("r1", "m0", "green", soap=2, oil=1) | {"consent": {"spend_code": code}}
    r = await client.post(f"{BLUE}/redemptions", json=body, headers=till)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["points"], made["member_community"], made["transaction_id"]) == (
        30,
        "green",
        "redemption:r1",
    )
    # Green: the member paid into green's account for blue; blue: from its account for
    # green to the store. Each community's books balance on their own.
    assert (await balance(client, "m0"))["points"]["score"] == 170
    assert await account(client, GREEN, "interchange:blue:points") == 30
    assert await account(client, BLUE, "interchange:green:points") == -30
    assert await account(client, BLUE, "store:s1:redemptions") == 30
    stock = (await client.get(f"{BLUE}/stores/s1/items")).json()["items"]
    assert {i["sku"]: i["stock"] for i in stock} == {"oil": 9, "soap": 8}
    # The member's statement says where the points went.
    lines = (await client.get(f"{GREEN}/members/m0/statement")).json()["entries"]
    assert "blue/s1" in lines[0]["reason"] and lines[0]["amount"] == -30
    # A replay answers as the original did; the code is used up.
    again = await client.post(f"{BLUE}/redemptions", json=body, headers=till)
    assert again.status_code == 200 and again.json() == made
    body2 = basket("r2", "m0", "green", soap=1) | {"consent": {"spend_code": code}}
    used = await client.post(f"{BLUE}/redemptions", json=body2, headers=till)
    assert used.status_code == 403 and used.json()["code"] == "consent_required"
    assert (await client.get(f"{BLUE}/redemptions/r1", headers=till)).json() == made
    assert (await client.get(f"{D1}/audit/verify")).json()["ok"] is True


async def test_refusals_change_nothing_on_either_side(client: Client) -> None:
    await two_communities(client)
    till = await key(client, role="store", community="blue", store="s1")
    code = await spend_code(client, GREEN, "m0", 500)
    consent = {"consent": {"spend_code": code}}

    async def try_(body: dict[str, Any], where: str = BLUE) -> tuple[int, str]:
        r = await client.post(f"{where}/redemptions", json=body | consent, headers=till)
        return r.status_code, r.json().get("code", "")

    # Too few points above the baseline (green's rule set: 100 + 100 awarded).
    assert await try_(basket("r1", "m0", "green", oil=6)) == (409, "insufficient_points")
    assert await try_(basket("r1", "nobody", "green", soap=1)) == (403, "consent_required")
    assert await try_(basket("r1", "m0", "blue", soap=1)) == (422, "validation_error")
    assert await try_(basket("r1", "m0", "nowhere", soap=1)) == (404, "not_found")
    assert await try_(basket("r1", "m0", "green", soap=11)) == (409, "out_of_stock")
    # A store that serves its own community only.
    r = await client.put(f"{BLUE}/stores/s1", json={"name": "Love", "district_wide": False})
    assert r.status_code == 200 and r.json()["district_wide"] is False
    assert await try_(basket("r1", "m0", "green", soap=1)) == (403, "outside_district")
    await client.put(f"{BLUE}/stores/s1", json={"name": "Love", "district_wide": True})
    # A community of no district, or of another.
    await client.post("/v1/communities", json={"id": "red", "name": "Red"})
    assert await try_(basket("r1", "m0", "red", soap=1)) == (403, "outside_district")
    # Nothing moved: the code is still good and pays for what the member can afford.
    assert (await balance(client, "m0"))["points"]["score"] == 200
    assert await account(client, BLUE, "store:s1:redemptions") == 0
    assert await try_(basket("r1", "m0", "green", oil=5)) == (201, "")
    assert (await balance(client, "m0"))["points"]["redeemable"] == 0


async def test_a_return_undoes_both_sides_and_gives_the_lots_back(client: Client) -> None:
    await two_communities(client)
    before = (await client.get(f"{GREEN}/members/m0/lots")).json()
    r = await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", soap=4))
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{BLUE}/redemptions/r1/return", json={"items": [{"sku": "soap", "qty": 1}]}
    )
    assert r.status_code == 201 and r.json()["points"] == 5, r.text
    assert await account(client, GREEN, "interchange:blue:points") == 15
    assert await account(client, BLUE, "interchange:green:points") == -15
    r = await client.post(f"{BLUE}/redemptions/r1/return")
    assert r.status_code == 201 and r.json()["points"] == 15, r.text
    assert await account(client, GREEN, "interchange:blue:points") == 0
    assert await account(client, BLUE, "interchange:green:points") == 0
    assert await account(client, BLUE, "store:s1:redemptions") == 0
    assert (await balance(client, "m0"))["points"]["score"] == 200
    assert (await client.get(f"{GREEN}/members/m0/lots")).json() == before
    # One side alone is never undone: only the change, through its return.
    r = await client.post(f"{GREEN}/transactions/redemption:blue:r1/reverse")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    r = await client.post(f"{BLUE}/transactions/redemption:r1/reverse")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    # Nor can a client write an interchange account itself.
    posting = {"source": "system:issuance:points", "destination": "interchange:blue:points"}
    r = await client.post(
        f"{GREEN}/transactions",
        json={"id": "sneak", "postings": [posting | {"asset": "points", "amount": 5}]},
    )
    assert r.status_code == 422


async def test_clearing_nets_both_directions_in_points_and_fen(client: Client) -> None:
    await two_communities(client)
    await award_blue(client, "seed-b0", "b0", 100)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", oil=2))
    ).status_code == 201
    assert (
        await client.post(f"{GREEN}/redemptions", json=basket("r1", "b0", "blue", soap=3))
    ).status_code == 201
    clearing = (await client.get(f"{D1}/clearing")).json()
    fen = clearing["fen_per_point"]
    by_pair = {(p["from"], p["to"]): p for p in clearing["positions"]}
    green_blue, blue_green = by_pair[("green", "blue")], by_pair[("blue", "green")]
    assert (green_blue["points"], green_blue["net_points"]) == (40, 25)
    assert (blue_green["points"], blue_green["net_points"]) == (15, -25)
    assert green_blue["net_fen_at_from"] == 25 * fen["green"]
    assert green_blue["net_fen_at_to"] == 25 * fen["blue"]
    # An operator of one community sees its side, from its own books.
    op = await key(client, role="operator", community="green")
    own = (await client.get(f"{GREEN}/interchange", headers=op)).json()
    assert {(p["from"], p["to"]): p["net_points"] for p in own["positions"]} == {
        ("green", "blue"): 25,
        ("blue", "green"): -25,
    }
    assert (await client.get(f"{D1}/clearing", headers=op)).status_code == 403
    assert (await client.get(f"{BLUE}/interchange", headers=op)).status_code == 403


async def test_a_settlement_closes_a_period_once(client: Client, pool: asyncpg.Pool) -> None:
    await two_communities(client)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", oil=1))
    ).status_code == 201
    now = await pool.fetchval("SELECT now()")
    period = {"from": "2026-01-01T00:00:00+08:00", "to": now.isoformat()}
    officer = await key(client, role="district_operator", district="d1")
    r = await client.post(f"{D1}/settlements", json={"id": "s-1"} | period, headers=officer)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["moves"], made["late"]) == (2, 0)
    assert {(p["from"], p["to"]): p["net_points"] for p in made["positions"]} == {
        ("green", "blue"): 20,
        ("blue", "green"): -20,
    }
    again = await client.post(f"{D1}/settlements", json={"id": "s-1"} | period, headers=officer)
    assert again.status_code == 200 and again.json() == made
    later = {"from": now.isoformat(), "to": "2026-01-02T00:00:00+08:00"}
    r = await client.post(f"{D1}/settlements", json={"id": "s-1"} | later, headers=officer)
    assert r.status_code in (409, 422)
    overlap = {"from": "2026-02-01T00:00:00+08:00", "to": now.isoformat()}
    r = await client.post(f"{D1}/settlements", json={"id": "s-2"} | overlap, headers=officer)
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    future = {"from": now.isoformat(), "to": "2999-01-01T00:00:00+08:00"}
    r = await client.post(f"{D1}/settlements", json={"id": "s-3"} | future, headers=officer)
    assert r.status_code == 422
    listed = (await client.get(f"{D1}/settlements", headers=officer)).json()["settlements"]
    assert [s["id"] for s in listed] == ["s-1"]
    assert (await client.get(f"{D1}/settlements/s-1", headers=officer)).json() == made
    # Another district's officer sees none of it.
    await client.post("/v1/districts", json={"id": "d2", "name": "Other"})
    stranger = await key(client, role="district_operator", district="d2")
    for path in (D1, f"{D1}/clearing", f"{D1}/settlements", f"{D1}/settlements/s-1"):
        assert (await client.get(path, headers=stranger)).status_code == 403
    r = await client.post(f"{D1}/settlements", json={"id": "s-9"} | later, headers=stranger)
    assert r.status_code == 403
    # A district operator acts on districts only, and only an admin issues its key.
    assert (await client.get(f"{GREEN}/members/m0/balance", headers=officer)).status_code == 403
    op = await key(client, role="operator", community="green")
    r = await client.post(
        "/v1/api-keys", json={"role": "district_operator", "district": "d1"}, headers=op
    )
    assert r.status_code == 403
    r = await client.post("/v1/api-keys", json={"role": "district_operator"})
    assert r.status_code == 422


async def _sneak_leg(conn: asyncpg.Connection) -> int:
    """3 points onto green's interchange account for blue, written alone (no move, no
    other side); the transaction's row id."""
    sneak = NewTransaction(
        client_id="sneak",
        postings=(
            Posting(
                source=ISSUANCE, destination="interchange:blue:points", asset="points", amount=3
            ),
        ),
        request_hash=b"",
    )
    document = ledger.write_document(sneak, RuleParams())
    tx_id: int = await conn.fetchval(
        "SELECT tx_id FROM ledger_write('green', ledger_writes($1::text::jsonb))", document
    )
    return tx_id


async def _interchange_findings(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {
        check: [dict(r) for r in await conn.fetch(q(query), "green")]
        for check, query, _ in audit.INTERCHANGE_CHECKS
    }


async def test_the_audit_finds_a_side_without_its_mirror(
    client: Client, pool: asyncpg.Pool
) -> None:
    await two_communities(client)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", oil=1))
    ).status_code == 201
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # One side written alone, behind the service's back.
            await _sneak_leg(conn)
            found = await _interchange_findings(conn)
        finally:
            await tx.rollback()
    assert found["interchange_mirror"] == [
        {"other": "blue", "asset": "points", "mine": 23, "theirs": -20}
    ]
    assert found["interchange_moves"][0]["client_id"] == "sneak"
    assert found["interchange_sides"] == []  # a transaction with no move names no change
    assert (await client.get(f"{D1}/audit/verify")).json()["ok"] is True


async def test_a_change_seen_on_one_side_is_the_sides_check_s_not_the_mirror_s(
    client: Client, pool: asyncpg.Pool
) -> None:
    """A change with its move recorded on one side only (on Citus, for a moment, a
    change in flight between two workers) leaves the mirror's balances apart by
    exactly its amount: the mirror check allows for it, and the sides check names the
    change. The audit looks at it again before reporting it; one that is gone by
    then (it was in flight) is not reported."""
    await two_communities(client)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            tx_id = await _sneak_leg(conn)
            await conn.execute(
                """INSERT INTO interchange_moves (community_id, tx_id, asset, change_id,
                                                  counterparty, district_id, amount, kind)
                   VALUES ('green', $1, 'points', 'ghost', 'blue', 'd1', 3, 'redemption')""",
                tx_id,
            )
            found = await _interchange_findings(conn)
        finally:
            await tx.rollback()
    assert found["interchange_mirror"] == []
    assert found["interchange_moves"] == []
    assert found["interchange_sides"] == [
        {"change_id": "ghost", "asset": "points", "counterparty": "blue", "mine": 3, "theirs": 0}
    ]
    gone = audit.Problem(check="interchange_sides", detail="change ghost moved 3 points here")
    other = audit.Problem(check="lots", detail="kept as it is")
    async with pool.acquire() as conn:
        assert await audit._persisting(conn, {"green": ""}, [gone, other]) == [other]


async def test_a_settlement_as_a_sheet(client: Client, pool: asyncpg.Pool) -> None:
    await two_communities(client)
    await award_blue(client, "seed-b0", "b0", 100)
    r = await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", oil=2))
    assert r.status_code == 201
    r = await client.post(f"{GREEN}/redemptions", json=basket("r1", "b0", "blue", soap=1))
    assert r.status_code == 201
    now = await pool.fetchval("SELECT now()")
    body = {"id": "2026-12", "from": "2026-11-01T00:00:00+08:00", "to": now.isoformat()}
    assert (await client.post(f"{D1}/settlements", json=body)).status_code == 201
    r = await client.get(f"{D1}/settlements/2026-12/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "district-settlement-d1-2026-12-20261101.csv" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content[3:].decode("utf-8"), newline="")))
    assert rows[0][:5] == ["结算单号", "开始", "结束", "付方社区", "收方社区"]
    by_pair = {(row[3], row[4]): row for row in rows[1:-1]}
    # Green's members spent 40 at blue, blue's 5 at green: green owes blue 35 points,
    # 3.50 yuan at 10 fen a point.
    assert by_pair[("green", "blue")][5:11] == ["40", "0", "35", "0", "350", "3.50"]
    assert by_pair[("blue", "green")][7] == "-35"
    assert rows[-1][7:9] == ["0", "0"]
    x = await client.get(f"{D1}/settlements/2026-12/export", params={"format": "xlsx"})
    sheet = openpyxl.load_workbook(io.BytesIO(x.content)).active
    assert sheet is not None and sheet.max_row == len(rows)
    assert (await client.get(f"{D1}/settlements/none/export")).status_code == 404


async def test_the_worked_example_of_docs_network(client: Client) -> None:
    """docs/network.md, "A worked example in yuan", in numbers: green is 江汉一
    (10 fen a point), blue 江汉二 (8 fen a point)."""
    await two_communities(client)
    r = await client.put(f"{BLUE}/rules", json={"baseline": 100, "fen_per_point": 8})
    assert r.status_code in (200, 201), r.text
    await award_blue(client, "seed-b0", "b0", 100)
    await client.put(
        f"{BLUE}/stores/s1/items/rice", json={"name": "Rice", "points": 20, "stock": 5}
    )
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", rice=3))
    ).status_code == 201
    one_bag = {"items": [{"sku": "rice", "qty": 1}]}
    assert (await client.post(f"{BLUE}/redemptions/r1/return", json=one_bag)).status_code == 201
    await client.put(
        f"{GREEN}/stores/s1/items/soap", json={"name": "Soap", "points": 15, "stock": 5}
    )
    assert (
        await client.post(f"{GREEN}/redemptions", json=basket("r1", "b0", "blue", soap=1))
    ).status_code == 201
    assert await account(client, GREEN, "interchange:blue:points") == 25
    assert await account(client, BLUE, "interchange:green:points") == -25
    assert await account(client, GREEN, "store:s1:redemptions") == 15
    assert await account(client, BLUE, "store:s1:redemptions") == 40
    clearing = (await client.get(f"{D1}/clearing")).json()
    rows = {
        (p["from"], p["to"]): (
            p["points"],
            p["net_points"],
            p["net_fen_at_from"],
            p["net_fen_at_to"],
        )
        for p in clearing["positions"]
    }
    assert rows == {("green", "blue"): (60, 25, 250, 200), ("blue", "green"): (35, -25, -200, -250)}
