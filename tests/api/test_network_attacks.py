"""Attacks on the district network (SPEC section 16): keys, codes and ids that try to
reach across communities or districts. Each is refused cleanly (403, 404, 409 or
422, never a 500) and changes nothing on either side: a store of b sees of a's
member only what its till needs, an operator of one community sees only its side,
a district operator acts on its district only, and the interchange accounts move
only with a change between two communities."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from tests.api.test_rules import SCHEME, YAML
from tests.helpers import Client
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

_TABLES = (
    "transactions",
    "entries",
    "redemptions",
    "redemption_returns",
    "interchange_moves",
    "settlements",
    "events",
    "lots",
    "members",
    "rule_sets",
)


async def _snapshot(pool: asyncpg.Pool) -> dict[str, Any]:
    """What a refused attempt must leave as it was: every account's balance, the
    stock, the spend codes' use and how many rows the ledger's tables hold."""
    async with pool.acquire() as conn:
        found: dict[str, Any] = {
            t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in _TABLES
        }
        found["accounts"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT community_id, address, posted, held FROM accounts ORDER BY 1, 2"
            )
        ]
        found["stock"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT community_id, store_id, sku, stock FROM store_items ORDER BY 1, 2, 3"
            )
        ]
        found["codes"] = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT community_id, member_id, used_by FROM spend_codes ORDER BY created_at"
            )
        ]
    return found


def _refused(r: Any, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    if code is not None:
        assert r.json()["code"] == code, r.text


async def _district(client: Client, ident: str, *communities: str) -> None:
    body = {"id": ident, "name": ident.title(), "communities": list(communities)}
    r = await client.post("/v1/districts", json=body)
    assert r.status_code == 201, r.text


async def _member_of(client: Client, community: str, member: str) -> None:
    r = await client.post("/v1/communities", json={"id": community, "name": community.title()})
    assert r.status_code == 201, r.text
    where = f"/v1/communities/{community}"
    r = await client.post(f"{where}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{where}/members", json={"id": member, "household": "h0"})
    assert r.status_code == 201, r.text


async def test_a_till_cannot_serve_members_of_communities_outside_its_district(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Blue's district-wide till, with a valid spend code of the member's own
    community, for a member of a community of no district and of another district:
    outside_district, nothing written on any side, the codes still unused."""
    await two_communities(client)
    await _member_of(client, "red", "m0")  # in no district
    await _member_of(client, "teal", "m0")
    await _district(client, "d2", "teal")
    till = await key(client, role="store", community="blue", store="s1")
    codes = {c: await spend_code(client, f"/v1/communities/{c}", "m0", 50) for c in ("red", "teal")}
    before = await _snapshot(pool)
    for community, code in codes.items():
        body = basket("r1", "m0", community, soap=1) | {"consent": {"spend_code": code}}
        r = await client.post(f"{BLUE}/redemptions", json=body, headers=till)
        _refused(r, 403, "outside_district")
        # Nor with the admin key: the district decides, not the key.
        r = await client.post(f"{BLUE}/redemptions", json=body)
        _refused(r, 403, "outside_district")
    assert await _snapshot(pool) == before
    assert (await client.get(f"{BLUE}/redemptions/r1", headers=till)).status_code == 404


async def test_a_store_of_blue_sees_nothing_of_greens_member_but_its_own_sales(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Blue's till sells to green's m0, then tries to read m0's balance, statement,
    lots, mandates and profile, to issue a code for m0, to read green's redemptions
    and accounts, and the same through its own community's paths: 403 in green,
    and in blue there is no such member (404 or 403), only its own redemption."""
    await two_communities(client)
    till = await key(client, role="store", community="blue", store="s1")
    code = await spend_code(client, GREEN, "m0", 50)
    sale = basket("r1", "m0", "green", soap=1) | {"consent": {"spend_code": code}}
    r = await client.post(f"{BLUE}/redemptions", json=sale, headers=till)
    assert r.status_code == 201, r.text
    before = await _snapshot(pool)
    for path in ("balance", "statement", "lots", "mandates", "proxies", ""):
        r = await client.get(f"{GREEN}/members/m0/{path}".rstrip("/"), headers=till)
        _refused(r, 403, "forbidden")
        r = await client.get(f"{BLUE}/members/m0/{path}".rstrip("/"), headers=till)
        assert r.status_code in (403, 404), r.text
    for path in (
        f"{GREEN}/redemptions/r1",
        f"{GREEN}/stores/s1/items",
        f"{GREEN}/accounts/member:m0:points",
        f"{GREEN}/accounts/interchange:blue:points",
        f"{GREEN}/interchange",
        f"{BLUE}/interchange",
        f"{BLUE}/accounts/interchange:green:points",
        f"{D1}/clearing",
        D1,
    ):
        _refused(await client.get(path, headers=till), 403, "forbidden")
    r = await client.post(f"{GREEN}/members/m0/spend-codes", json={"max_points": 5}, headers=till)
    _refused(r, 403, "forbidden")
    # What its till needs: its own sale, which names the member and its community.
    mine = (await client.get(f"{BLUE}/redemptions/r1", headers=till)).json()
    assert (mine["member"], mine["member_community"], mine["points"]) == ("m0", "green", 5)
    assert await _snapshot(pool) == before


async def test_a_spend_code_pays_only_for_its_member_and_its_own_communitys_store(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Green's m0's code presented at blue's till for green's m1; a code limited to
    green's store s1 presented at blue's s1 (store ids are per community): both
    refused (consent_required), nothing written, and each code still pays for what
    it was issued for."""
    await two_communities(client)
    await client.post(
        f"{GREEN}/transactions",
        json={
            "id": "seed-m1",
            "postings": [
                {
                    "source": "system:issuance:points",
                    "destination": "member:m1:points",
                    "asset": "points",
                    "amount": 100,
                }
            ],
        },
    )
    blue_till = await key(client, role="store", community="blue", store="s1")
    green_till = await key(client, role="store", community="green", store="s1")
    m0s = await spend_code(client, GREEN, "m0", 50)
    r = await client.post(f"{GREEN}/members/m0/spend-codes", json={"max_points": 50, "store": "s1"})
    assert r.status_code == 201, r.text
    green_s1_only = r.json()["code"]
    before = await _snapshot(pool)
    other = basket("r1", "m1", "green", soap=1) | {"consent": {"spend_code": m0s}}
    r = await client.post(f"{BLUE}/redemptions", json=other, headers=blue_till)
    _refused(r, 403, "consent_required")
    there = basket("r1", "m0", "green", soap=1) | {"consent": {"spend_code": green_s1_only}}
    r = await client.post(f"{BLUE}/redemptions", json=there, headers=blue_till)
    _refused(r, 403, "consent_required")
    # Nor for blue's own member of the same id or any other.
    r = await client.post(
        f"{BLUE}/redemptions",
        json=basket("r1", "b0", None, soap=1) | {"consent": {"spend_code": m0s}},
        headers=blue_till,
    )
    _refused(r, 403, "consent_required")
    assert await _snapshot(pool) == before
    # Each code still pays for what it was issued for.
    mine = basket("r1", "m0", "green", soap=1) | {"consent": {"spend_code": m0s}}
    assert (
        await client.post(f"{BLUE}/redemptions", json=mine, headers=blue_till)
    ).status_code == 201
    home = basket("g1", "m0", None, soap=1) | {"consent": {"spend_code": green_s1_only}}
    r = await client.post(f"{GREEN}/redemptions", json=home, headers=green_till)
    assert r.status_code == 201, r.text


async def test_an_operator_of_blue_needs_greens_consent_to_spend_greens_member(
    client: Client, pool: asyncpg.Pool
) -> None:
    """An operator is trusted in its own community, not in the member's: blue's
    operator redeeming for green's m0 at blue's district-wide store needs m0's
    consent from green, like any till; green's own operator needs none at home."""
    await two_communities(client)
    blue_op = await key(client, role="operator", community="blue")
    green_op = await key(client, role="operator", community="green")
    before = await _snapshot(pool)
    r = await client.post(
        f"{BLUE}/redemptions", json=basket("r1", "m0", "green", oil=5), headers=blue_op
    )
    _refused(r, 403, "consent_required")
    assert await _snapshot(pool) == before
    code = await spend_code(client, GREEN, "m0", 20)
    body = basket("r1", "m0", "green", oil=1) | {"consent": {"spend_code": code}}
    r = await client.post(f"{BLUE}/redemptions", json=body, headers=blue_op)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"{GREEN}/redemptions", json=basket("g1", "m0", None, oil=1), headers=green_op
    )
    assert r.status_code == 201, r.text


async def test_redemption_ids_and_member_communities_cannot_be_swapped(
    client: Client, pool: asyncpg.Pool
) -> None:
    """A redemption's id replayed with another member community (of the district,
    with a valid code there), or for a member of the store's own community: 409
    idempotency_conflict, nothing written, the new code unused. The original replayed
    with another valid code answers as it did and leaves that code unused."""
    await two_communities(client)
    await _member_of(client, "yellow", "m0")
    r = await client.put("/v1/districts/d1/communities/yellow")
    assert r.status_code == 200, r.text
    till = await key(client, role="store", community="blue", store="s1")
    code = await spend_code(client, GREEN, "m0", 50)
    original = basket("r1", "m0", "green", soap=1)
    r = await client.post(
        f"{BLUE}/redemptions", json=original | {"consent": {"spend_code": code}}, headers=till
    )
    assert r.status_code == 201, r.text
    made = r.json()
    yellow = await spend_code(client, "/v1/communities/yellow", "m0", 50)
    fresh = await spend_code(client, GREEN, "m0", 50)
    blue = await spend_code(client, BLUE, "b0", 50)
    before = await _snapshot(pool)
    swapped = basket("r1", "m0", "yellow", soap=1) | {"consent": {"spend_code": yellow}}
    r = await client.post(f"{BLUE}/redemptions", json=swapped, headers=till)
    _refused(r, 409, "idempotency_conflict")
    local = basket("r1", "b0", None, soap=1) | {"consent": {"spend_code": blue}}
    r = await client.post(f"{BLUE}/redemptions", json=local, headers=till)
    _refused(r, 409, "idempotency_conflict")
    replay = original | {"consent": {"spend_code": fresh}}
    r = await client.post(f"{BLUE}/redemptions", json=replay, headers=till)
    assert r.status_code == 200 and r.json() == made, r.text
    assert await _snapshot(pool) == before
    # Green's side of it cannot be claimed by an id of green's own either.
    green_till = await key(client, role="store", community="green", store="s1")
    r = await client.post(
        f"{GREEN}/redemptions",
        json=basket("r1", "m0", None, soap=1) | {"consent": {"spend_code": fresh}},
        headers=green_till,
    )
    assert r.status_code == 201, r.text
    assert (await client.get(f"{GREEN}/transactions/redemption:r1")).status_code == 200
    assert (await client.get(f"{GREEN}/transactions/redemption:blue:r1")).status_code == 200


async def test_junk_in_member_community_is_a_validation_error(
    client: Client, pool: asyncpg.Pool
) -> None:
    await two_communities(client)
    till = await key(client, role="store", community="blue", store="s1")
    code = await spend_code(client, GREEN, "m0", 50)
    before = await _snapshot(pool)
    for junk in (
        "GREEN",
        "green ",
        " green",
        "green\n",
        "gr/een",
        "../green",
        "green;drop",
        "",
        "g" * 65,
        "绿",
        5,
        True,
        ["green"],
        {"id": "green"},
    ):
        body = basket("r1", "m0", None, soap=1) | {
            "member_community": junk,
            "consent": {"spend_code": code},
        }
        r = await client.post(f"{BLUE}/redemptions", json=body, headers=till)
        _refused(r, 422, "validation_error")
    # Null is leaving it out: a member of blue, which has no m0.
    body = basket("r1", "m0", None, soap=1) | {
        "member_community": None,
        "consent": {"spend_code": code},
    }
    r = await client.post(f"{BLUE}/redemptions", json=body, headers=till)
    assert r.status_code in (403, 404), r.text
    # Its own community named as the member's: 422 (test_network), and a community
    # that does not exist: 404.
    body = basket("r1", "m0", "nowhere", soap=1) | {"consent": {"spend_code": code}}
    _refused(await client.post(f"{BLUE}/redemptions", json=body, headers=till), 404)
    assert await _snapshot(pool) == before


async def test_a_resident_key_cannot_redeem_anywhere(client: Client, pool: asyncpg.Pool) -> None:
    await two_communities(client)
    resident = await key(client, role="resident", community="green", member="m0")
    code = await spend_code(client, GREEN, "m0", 50)
    before = await _snapshot(pool)
    consent = {"consent": {"spend_code": code}}
    for where, body in (
        (GREEN, basket("r1", "m0", None, soap=1)),
        (BLUE, basket("r1", "m0", "green", soap=1)),
    ):
        r = await client.post(f"{where}/redemptions", json=body | consent, headers=resident)
        _refused(r, 403, "forbidden")
        r = await client.post(f"{where}/redemptions/r1/return", headers=resident)
        _refused(r, 403, "forbidden")
    assert await _snapshot(pool) == before


async def test_operators_of_a_community_stay_out_of_the_districts_routes(
    client: Client, pool: asyncpg.Pool
) -> None:
    """Green's operator (and blue's till): clearing, settlements, the district's
    audit and its record: 403 for reads and writes, nothing settled."""
    await two_communities(client)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", soap=1))
    ).status_code == 201
    now = await pool.fetchval("SELECT now()")
    period = {"from": "2026-01-01T00:00:00+08:00", "to": now.isoformat()}
    r = await client.post(f"{D1}/settlements", json={"id": "s-1"} | period)
    assert r.status_code == 201, r.text
    op = await key(client, role="operator", community="green")
    till = await key(client, role="store", community="blue", store="s1")
    before = await _snapshot(pool)
    for headers in (op, till):
        for path in (
            D1,
            f"{D1}/clearing",
            f"{D1}/settlements",
            f"{D1}/settlements/s-1",
            f"{D1}/settlements/s-1/export",
            f"{D1}/audit/verify",
        ):
            _refused(await client.get(path, headers=headers), 403, "forbidden")
        r = await client.post(f"{D1}/settlements", json={"id": "s-2"} | period, headers=headers)
        _refused(r, 403, "forbidden")
        r = await client.put(f"{D1}/communities/green", headers=headers)
        _refused(r, 403, "forbidden")
        r = await client.post("/v1/districts", json={"id": "d9", "name": "x"}, headers=headers)
        _refused(r, 403, "forbidden")
        r = await client.put(
            f"{BLUE}/stores/s1", json={"name": "x", "district_wide": False}, headers=headers
        )
        _refused(r, 403, "forbidden")
    assert await _snapshot(pool) == before


def _fill(path: str) -> str:
    """A concrete path for a route's template: green's m0, d1, and `x` for the rest."""
    values = {"c": "green", "m": "m0", "d": "d1"}
    return re.sub(r"\{(\w+):\w+\}", lambda m: values.get(m.group(1), "x"), path)


async def test_a_district_operator_acts_only_on_its_districts_routes(
    client: Client, pool: asyncpg.Pool
) -> None:
    """d1's district operator on every other /v1 route (each community's, the keys',
    creating districts or communities): 403; on d2's routes: 403; on d1's own it
    reads."""
    await two_communities(client)
    await _district(client, "d2")
    officer = await key(client, role="district_operator", district="d1")
    before = await _snapshot(pool)
    tried = 0
    for route in client.app.routes:
        for handler in route.route_handlers:
            roles = handler.opt.get("roles")
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                path = _fill(route.path)
                if not path.startswith("/v1/"):
                    continue
                if roles is not None and "district_operator" in roles:
                    # One of the district's own routes: d2's is not its own.
                    path = path.replace("/v1/districts/d1", "/v1/districts/d2", 1)
                kwargs: dict[str, Any] = {"headers": officer}
                if method in ("POST", "PUT", "PATCH"):
                    kwargs["json"] = {}
                r = await client.request(method, path, **kwargs)
                assert r.status_code == 403, (method, path, r.status_code, r.text)
                assert r.json()["code"] == "forbidden", r.text
                tried += 1
    assert tried > 50  # every /v1 route, the district's own ones in d2
    assert await _snapshot(pool) == before
    assert (await client.get(f"{D1}/clearing", headers=officer)).status_code == 200


async def test_guessed_settlement_ids_find_nothing(client: Client, pool: asyncpg.Pool) -> None:
    """d1's operator guessing ids (of d2's settlements too, through d1's path), and
    ids no settlement could have: 404 or 422, never another district's record."""
    await two_communities(client)
    await _district(client, "d2")
    now = await pool.fetchval("SELECT now()")
    period = {"from": "2026-01-01T00:00:00+08:00", "to": now.isoformat()}
    r = await client.post("/v1/districts/d2/settlements", json={"id": "s-d2"} | period)
    assert r.status_code == 201, r.text
    officer = await key(client, role="district_operator", district="d1")
    for guess in ("s-d2", "s-1", "1", "0", "-1", "%2e%2e", "a%20b", "x" * 300, "%00", "'--"):
        for suffix in ("", "/export"):
            r = await client.get(f"{D1}/settlements/{guess}{suffix}", headers=officer)
            assert r.status_code in (404, 422), (guess, r.status_code, r.text)
    r = await client.get("/v1/districts/d2/settlements/s-d2", headers=officer)
    _refused(r, 403, "forbidden")
    listed = (await client.get(f"{D1}/settlements", headers=officer)).json()["settlements"]
    assert listed == []


async def test_clients_never_write_interchange_accounts(client: Client, pool: asyncpg.Pool) -> None:
    """Postings to or from `interchange:<c>:<asset>` through POST /transactions
    (posted or pending, alone or beside a good posting), transactions:batch (each
    item, and an atomic batch as a whole), events:batch and a rule set's member
    close: 422, nothing written."""
    await two_communities(client)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", soap=1))
    ).status_code == 201
    before = await _snapshot(pool)

    def posting(source: str, destination: str, asset: str = "points") -> dict[str, Any]:
        return {"source": source, "destination": destination, "asset": asset, "amount": 5}

    good = posting("system:issuance:points", "member:m0:points")
    sneaky = [
        [posting("system:issuance:points", "interchange:blue:points")],
        [posting("interchange:blue:points", "member:m0:points")],
        [posting("interchange:blue:points", "system:expired:points")],
        [posting("system:timebank:minutes", "interchange:blue:minutes", "minutes")],
        [posting("interchange:green:points", "member:m0:points")],  # a mirror of itself
        [posting("interchange:red:points", "member:m0:points")],  # of no neighbour
        [good, posting("member:m0:points", "interchange:blue:points")],
    ]
    for i, postings in enumerate(sneaky):
        for extra in ({}, {"pending": {"ttl_s": 60}}):
            body = {"id": f"sneak{i}", "postings": postings} | extra
            r = await client.post(f"{GREEN}/transactions", json=body)
            _refused(r, 422, "validation_error")
        batch = {"transactions": [{"id": f"sneak{i}", "postings": postings}]}
        r = await client.post(f"{GREEN}/transactions:batch", json=batch)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == [422]
    atomic = {
        "atomic": True,
        "transactions": [
            {"id": "fine", "postings": [good]},
            {"id": "sneak", "postings": sneaky[0]},
        ],
    }
    r = await client.post(f"{GREEN}/transactions:batch", json=atomic)
    _refused(r, 422, "validation_error")
    assert r.json()["index"] == 1
    # Events carry no postings; a member id that looks like an account is refused.
    events = {
        "events": [
            {
                "id": "e1",
                "type": "fee.paid",
                "member": "interchange:blue:points",
                "occurred_at": "2026-11-20T10:00:00+08:00",
                "attributes": {"days_late": 0},
            }
        ]
    }
    r = await client.post(f"{GREEN}/events:batch", json=events)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == [422]
    # Nor can a rule set send a closed member's points there.
    closing = SCHEME + "member_close:\n  points_to: interchange:blue:points\n"
    r = await client.put(f"{GREEN}/rules", content=closing.encode(), headers=YAML)
    _refused(r, 422)
    assert await _snapshot(pool) == before
    for i in range(len(sneaky)):
        assert (await client.get(f"{GREEN}/transactions/sneak{i}")).status_code == 404
    assert (await client.get(f"{GREEN}/transactions/fine")).status_code == 404


async def test_neither_side_of_a_change_is_undone_alone(client: Client, pool: asyncpg.Pool) -> None:
    """Both sides of a redemption between communities and of its return: /reverse,
    /post and /void of each, with the admin key and each community's operator:
    409 (or 403 across communities), nothing written."""
    await two_communities(client)
    await award_blue(client, "seed-b0", "b0", 100)
    assert (
        await client.post(f"{BLUE}/redemptions", json=basket("r1", "m0", "green", soap=2))
    ).status_code == 201
    r = await client.post(
        f"{BLUE}/redemptions/r1/return", json={"id": "x", "items": [{"sku": "soap", "qty": 1}]}
    )
    assert r.status_code == 201, r.text
    assert (
        await client.post(f"{GREEN}/redemptions", json=basket("y1", "b0", "blue", soap=1))
    ).status_code == 201
    sides = {
        GREEN: ["redemption:blue:r1", "redemption:blue:r1:return:x", "redemption:y1"],
        BLUE: ["redemption:r1", "redemption:r1:return:x", "redemption:green:y1"],
    }
    operators = {
        GREEN: await key(client, role="operator", community="green"),
        BLUE: await key(client, role="operator", community="blue"),
    }
    before = await _snapshot(pool)
    for where, ids in sides.items():
        other = BLUE if where == GREEN else GREEN
        for tx in ids:
            assert (await client.get(f"{where}/transactions/{tx}")).status_code == 200, tx
            for action in ("reverse", "post", "void"):
                for headers in ({}, operators[where]):
                    r = await client.post(f"{where}/transactions/{tx}/{action}", headers=headers)
                    if action == "post":  # it is posted already: nothing to do
                        assert r.status_code == 200 and r.json()["status"] == "posted", r.text
                    else:
                        _refused(r, 409, "invalid_state")
                r = await client.post(
                    f"{where}/transactions/{tx}/{action}", headers=operators[other]
                )
                _refused(r, 403, "forbidden")
    assert await _snapshot(pool) == before
    # m0 spent 10 at blue and got 5 back; b0 spent 5 at green: green is even with blue.
    assert await account(client, GREEN, "interchange:blue:points") == 0


async def test_a_community_operator_may_retry_its_webhook_deliveries(client: Client) -> None:
    """A route of a community whose path has a `{d}` of its own (a webhook's delivery)
    is not a district's: the district scope check must not refuse its operator."""
    await two_communities(client)
    op = await key(client, role="operator", community="green")
    r = await client.post(f"{GREEN}/webhooks/w1/deliveries/1/retry", headers=op)
    _refused(r, 404, "not_found")
    officer = await key(client, role="district_operator", district="d1")
    r = await client.post(f"{GREEN}/webhooks/w1/deliveries/d1/retry", headers=officer)
    _refused(r, 403, "forbidden")


async def test_time_and_moves_stay_inside_the_district(client: Client, pool: asyncpg.Pool) -> None:
    """Time transfers, hours and moving house towards a community of no district, of
    another district, that does not exist or is junk, or onto a member who exists
    there; a move started by another community's operator: refused, nothing changed."""
    await two_communities(client)
    await _member_of(client, "red", "m0")  # in no district
    await _member_of(client, "teal", "m0")
    await _district(client, "d2", "teal")
    seed = {
        "source": "system:timebank:minutes",
        "destination": "member:b0:minutes",
        "asset": "minutes",
        "amount": 600,
    }
    r = await client.post(f"{BLUE}/transactions", json={"id": "seed", "postings": [seed]})
    assert r.status_code == 201, r.text
    app = await key(client, role="volunteer_app", community="blue")
    blue_op = await key(client, role="operator", community="blue")
    before = await _snapshot(pool)
    refusals = (
        ("red", 403, "outside_district"),
        ("teal", 403, "outside_district"),
        ("nowhere", 404, "not_found"),
        ("GREEN", 422, "validation_error"),
        ("blue", 422, "validation_error"),  # its own community
    )
    for where, status, code in refusals:
        gift = {"id": "t1", "from_member": "b0", "to_member": "m0", "minutes": 10}
        r = await client.post(
            f"{BLUE}/time-transfers", json=gift | {"to_member_community": where}, headers=app
        )
        _refused(r, status, code)
        hours = {
            "id": "vh1",
            "member": "m0",
            "member_community": where,
            "activity": "visits",
            "started_at": "2026-11-20T09:00:00+08:00",
            "minutes": 60,
        }
        r = await client.post(f"{BLUE}/volunteer-hours", json=hours, headers=app)
        _refused(r, status, code)
        to = "green" if where == "blue" else where  # green's own, for a move from green
        move = {"id": "mv1", "to_community": to, "to_member": "n1", "household": "h0"}
        _refused(await client.post(f"{GREEN}/members/m1/move", json=move), status, code)
    gift = {"id": "t1", "from_member": "b0", "to_member": "nobody", "minutes": 10}
    r = await client.post(
        f"{BLUE}/time-transfers", json=gift | {"to_member_community": "green"}, headers=app
    )
    _refused(r, 404, "not_found")
    move = {"id": "mv2", "to_community": "blue", "to_member": "b0", "household": "h0"}
    _refused(await client.post(f"{GREEN}/members/m1/move", json=move), 409, "invalid_state")
    move = {"id": "mv3", "to_community": "blue", "to_member": "n1", "household": "h0"}
    r = await client.post(f"{GREEN}/members/m1/move", json=move, headers=blue_op)
    _refused(r, 403, "forbidden")
    assert await _snapshot(pool) == before
