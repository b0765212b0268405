"""Consent (SPEC section 10), tried as an attacker would first: guessed, replayed,
cross-member, cross-store, expired and oversized spend codes; PIN guessing across
two workers; offsets without or beyond a mandate. Every refusal changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from tests.helpers import OFFSETS, C, Client, award, balance, bearer, community


async def key(client: Client, role: str, **scope: str) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def shop(client: Client) -> None:
    """Community green (m0, m1 in h0 of acme), 100 points above the baseline each,
    store s1 with soap (5) and oil (20)."""
    await community(client)
    for m in ("m0", "m1"):
        await award(client, f"a-{m}", m, 100)
    for store in ("s1", "s2"):
        for sku, points in (("soap", 5), ("oil", 20)):
            item = {"name": sku, "points": points, "stock": 10}
            r = await client.put(f"{C}/stores/{store}/items/{sku}", json=item)
            assert r.status_code in (200, 201), r.text


def basket(rid: str, member: str = "m0", store: str = "s1", oil: int = 1, **consent: str) -> Any:
    body: dict[str, Any] = {
        "id": rid,
        "store": store,
        "member": member,
        "items": [{"sku": "oil", "qty": oil}],
    }
    if consent:
        body["consent"] = consent
    return body


async def spend_code(
    client: Client, resident: dict[str, str], member: str = "m0", **body: Any
) -> str:
    r = await client.post(
        f"{C}/members/{member}/spend-codes", json={"max_points": 50, **body}, headers=resident
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    code: str = r.json()["code"]
    return code


async def state(client: Client) -> tuple[int, int, int]:
    """m0's and m1's redeemable points and the oil left at s1."""
    items = (await client.get(f"{C}/stores/s1/items")).json()["items"]
    oil = next(i["stock"] for i in items if i["sku"] == "oil")
    m0 = (await balance(client, "m0"))["points"]["redeemable"]
    m1 = (await balance(client, "m1"))["points"]["redeemable"]
    return m0, m1, oil


async def refused(client: Client, body: Any, till: dict[str, str], reason: str) -> dict[str, Any]:
    before = await state(client)
    r = await client.post(f"{C}/redemptions", json=body, headers=till)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert problem["code"] == "consent_required" and problem["detail"], problem
    assert problem.get("reason") == reason, problem
    assert await state(client) == before, "a refusal changed something"
    assert (await client.get(f"{C}/redemptions/{body['id']}")).status_code == 404
    return problem


async def test_a_till_needs_the_residents_consent(client: Client) -> None:
    await shop(client)
    till = await key(client, "store", store="s1")
    await refused(client, basket("r1"), till, "missing")
    for bad in ({"spend_code": ""}, {"pin": "12345"}, {"spend_code": "x", "pin": "123456"}):
        r = await client.post(
            f"{C}/redemptions", json={**basket("r1"), "consent": bad}, headers=till
        )
        assert r.status_code == 422, r.text
    # An operator (at the service desk) needs none, and is the actor.
    r = await client.post(f"{C}/redemptions", json=basket("r2"))
    assert r.status_code == 201, r.text


async def test_a_spend_code_is_used_once_and_a_replay_answers_as_before(
    client: Client, dsn: str
) -> None:
    await shop(client)
    till = await key(client, "store", store="s1")
    resident = await key(client, "resident", member="m0")
    code = await spend_code(client, resident)
    assert len(code) >= 12 and code.replace("-", "").replace("_", "").isalnum()
    r = await client.post(f"{C}/redemptions", json=basket("r1", spend_code=code), headers=till)
    assert r.status_code == 201, r.text
    assert await state(client) == (80, 100, 9)
    again = await client.post(f"{C}/redemptions", json=basket("r1", spend_code=code), headers=till)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == r.json()
    await refused(client, basket("r2", spend_code=code), till, "used")
    # Returned points leave the code used.
    back = await client.post(f"{C}/redemptions/r1/return", headers=till)
    assert back.status_code == 201, back.text
    await refused(client, basket("r3", spend_code=code), till, "used")
    # Only the code's digest is stored.
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM spend_codes")
    finally:
        await conn.close()
    assert len(rows) == 1 and bytes(rows[0]["code_hash"]) == hashlib.sha256(code.encode()).digest()
    assert code not in repr([dict(x) for x in rows])
    assert rows[0]["used_by"] == "r1"


async def test_guessed_foreign_expired_and_oversized_codes_are_refused(client: Client) -> None:
    await shop(client)
    s1 = await key(client, "store", store="s1")
    s2 = await key(client, "store", store="s2")
    m0 = await key(client, "resident", member="m0")
    m1 = await key(client, "resident", member="m1")
    await refused(client, basket("g1", spend_code=secrets.token_urlsafe(16)), s1, "unknown")
    await refused(client, basket("g2", spend_code="a"), s1, "unknown")
    # m1's code does not spend m0's points, nor m0's code m1's.
    code_m1 = await spend_code(client, m1, member="m1")
    await refused(client, basket("x1", spend_code=code_m1), s1, "member")
    # A code for store s1 does not work at s2; a code for any store works at both.
    code_s1 = await spend_code(client, m0, store="s1")
    await refused(client, basket("x2", store="s2", spend_code=code_s1), s2, "store")
    # More than the code's ceiling (50): 3 oil cost 60.
    problem = await refused(client, basket("x3", oil=3, spend_code=code_s1), s1, "ceiling")
    assert "50" in problem["detail"] and "60" in problem["detail"]
    # Refusals left the codes usable.
    ok = await client.post(f"{C}/redemptions", json=basket("x4", spend_code=code_s1), headers=s1)
    assert ok.status_code == 201, ok.text
    ok = await client.post(
        f"{C}/redemptions", json=basket("x5", member="m1", spend_code=code_m1), headers=s1
    )
    assert ok.status_code == 201, ok.text
    # Expired (the shortest life is a second).
    short = await spend_code(client, m0, ttl_s=1)
    await asyncio.sleep(1.2)
    await refused(client, basket("x6", spend_code=short), s1, "expired")


async def test_who_may_issue_a_spend_code(client: Client) -> None:
    await shop(client)
    m0 = await key(client, "resident", member="m0")
    till = await key(client, "store", store="s1")
    url = f"{C}/members/m0/spend-codes"
    assert (await client.post(url, json={"max_points": 5}, headers=till)).status_code == 403
    # Another resident learns nothing of m0: 404, as for a member that does not exist.
    m1 = await key(client, "resident", member="m1")
    r = await client.post(url, json={"max_points": 5}, headers=m1)
    assert r.status_code == 404, r.text
    r = await client.post(f"{C}/members/nobody/spend-codes", json={"max_points": 5}, headers=m1)
    assert r.status_code == 404, r.text
    for bad in ({"max_points": 0}, {"max_points": 5, "ttl_s": 601}, {"max_points": 5, "x": 1}):
        assert (await client.post(url, json=bad, headers=m0)).status_code == 422


async def test_two_tills_racing_on_one_code_get_one_success(client: Client) -> None:
    await shop(client)
    m0 = await key(client, "resident", member="m0")
    tills = [await key(client, "store", store="s1") for _ in range(2)]
    for round_ in range(5):
        code = await spend_code(client, m0, max_points=20)
        results = await asyncio.gather(
            *(
                client.post(
                    f"{C}/redemptions",
                    json=basket(f"race{round_}-{n}", spend_code=code),
                    headers=tills[n % 2],
                )
                for n in range(8)
            )
        )
        assert sorted(r.status_code for r in results) == [201] + [403] * 7, [
            r.text for r in results
        ]
    assert (await state(client))[0] == 100 - 5 * 20


async def test_consent_none_lets_tills_redeem_on_their_word(client: Client) -> None:
    await shop(client)
    r = await client.put(f"{C}/rules", json={"baseline": 100, "consent": {"redemption": "none"}})
    assert r.status_code in (200, 201), r.text
    till = await key(client, "store", store="s1")
    r = await client.post(f"{C}/redemptions", json=basket("n1"), headers=till)
    assert r.status_code == 201, r.text


async def pin(
    client: Client, member: str, value: str, headers: dict[str, str] | None = None
) -> None:
    r = await client.put(f"{C}/members/{member}/pin", json={"pin": value}, headers=headers or {})
    assert r.status_code == 200, r.text


async def test_a_pin_consents_and_is_stored_slowly_hashed(client: Client, dsn: str) -> None:
    await shop(client)
    m0 = await key(client, "resident", member="m0")
    await pin(client, "m0", "246810", m0)
    till = await key(client, "store", store="s1")
    r = await client.post(f"{C}/redemptions", json=basket("p1", pin="246810"), headers=till)
    assert r.status_code == 201, r.text
    await refused(client, basket("p2", pin="246811"), till, "wrong")
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT pin_hash FROM member_pins WHERE member_id = 'm0'")
    finally:
        await conn.close()
    assert stored.startswith("scrypt$") and "246810" not in stored
    # Who may set it: the resident itself or an operator, never another resident
    # or a till.
    m1 = await key(client, "resident", member="m1")
    for headers, status in ((m1, 404), (till, 403)):
        r = await client.put(f"{C}/members/m0/pin", json={"pin": "111111"}, headers=headers)
        assert r.status_code == status, r.text
    for bad in ("12345", "1234567", "12345a", "１２３４５６"):
        r = await client.put(f"{C}/members/m0/pin", json={"pin": bad}, headers=m0)
        assert r.status_code == 422, r.text
    await pin(client, "m0", "135790")  # the service desk


async def test_pin_guessing_across_two_workers_locks_after_five(client: Client, dsn: str) -> None:
    await shop(client)
    await pin(client, "m0", "246810")
    till = await key(client, "store", store="s1")
    app = create_app(load_settings(), dsn=dsn, scheduler=False)
    async with AsyncTestClient(app) as other:
        workers = [client, other]
        tries = await asyncio.gather(
            *(
                workers[n % 2].post(
                    f"{C}/redemptions",
                    json=basket(f"b{n}", pin=f"{n:06d}"),
                    headers=till,
                )
                for n in range(20)
            )
        )
        answers = Counter(r.json().get("reason") for r in tries)
        assert all(r.status_code == 403 for r in tries)
        assert answers == {"wrong": 5, "locked": 15}, answers
        # Locked: the right PIN too, on either worker, and nothing was spent.
        for worker in workers:
            r = await worker.post(
                f"{C}/redemptions", json=basket("right", pin="246810"), headers=till
            )
            assert r.status_code == 403 and r.json()["reason"] == "locked", r.text
    assert (await state(client))[0] == 100
    # After the lock's 15 minutes (moved back here), the right PIN passes and the
    # count starts again.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE member_pins SET locked_until = now() - interval '1 second'")
    finally:
        await conn.close()
    r = await client.post(f"{C}/redemptions", json=basket("right", pin="246810"), headers=till)
    assert r.status_code == 201, r.text


async def test_pin_answers_do_not_tell_whether_the_member_exists(client: Client) -> None:
    await shop(client)
    await pin(client, "m0", "246810")
    till = await key(client, "store", store="s1")
    seen = []
    for member in ("m0", "m1", "nobody"):  # a PIN, no PIN, no member
        answers = []
        for n in range(6):
            r = await client.post(
                f"{C}/redemptions",
                json=basket(f"{member}-{n}", member=member, pin="000000"),
                headers=till,
            )
            assert r.status_code == 403, r.text
            body = r.json()
            answers.append((body["reason"], body["detail"]))
        seen.append(answers)
    assert seen[0] == seen[1] == seen[2], seen


# Mandates ----------------------------------------------------------------------


def offset(oid: str, points: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": oid,
        "member": "m0",
        "household": "h0",
        "bill_amount_fen": 100_000,
        "points": points,
        **extra,
    }


async def mandate(
    client: Client, per_bill: int, per_year: int | None = None, **headers: str
) -> dict[str, Any]:
    body: dict[str, Any] = {"max_points_per_bill": per_bill}
    if per_year is not None:
        body["max_points_per_year"] = per_year
    r = await client.put(f"{C}/members/m0/mandates/acme", json=body, headers=headers)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def offset_refused(
    client: Client, body: dict[str, Any], billing: dict[str, str], reason: str
) -> dict[str, Any]:
    before = await balance(client, "m0")
    r = await client.post(OFFSETS, json=body, headers=billing)
    assert r.status_code == 403, r.text
    problem: dict[str, Any] = r.json()
    assert problem["code"] == "consent_required" and problem["reason"] == reason, problem
    assert await balance(client, "m0") == before
    assert (await client.get(f"{OFFSETS}/{body['id']}")).status_code == 404
    return problem


async def test_offsets_need_a_mandate_within_its_ceilings(client: Client) -> None:
    await shop(client)
    billing = await key(client, "property", property_company="acme")
    quote = {"member": "m0", "household": "h0", "bill_amount_fen": 100_000}
    q = (await client.post(f"{OFFSETS}/quote", json=quote, headers=billing)).json()
    assert (q["max_points"], q["mandate_required"], q["mandate"]) == (0, True, None)
    await offset_refused(client, offset("o1", 10), billing, "missing")
    resident = await key(client, "resident", member="m0")
    granted = await mandate(client, 30, 50, **resident)
    assert granted["granted_by"] and granted["used_points_this_year"] == 0
    q = (await client.post(f"{OFFSETS}/quote", json=quote, headers=billing)).json()
    assert q["max_points"] == 30 and q["mandate"]["id"] == granted["id"]
    await offset_refused(client, offset("o2", 31), billing, "per_bill")
    r = await client.post(OFFSETS, json=offset("o3", 30), headers=billing)
    assert r.status_code == 201 and r.json()["mandate_id"] == granted["id"], r.text
    q = (await client.post(f"{OFFSETS}/quote", json=quote, headers=billing)).json()
    assert q["max_points"] == 20
    problem = await offset_refused(client, offset("o4", 21, hold=True), billing, "per_year")
    assert problem["limit"] == 50
    r = await client.post(OFFSETS, json=offset("o5", 20, hold=True), headers=billing)
    assert r.status_code == 201, r.text
    # A cancelled offset gives its points back to the year.
    r = await client.post(f"{OFFSETS}/o5/cancel", headers=billing)
    assert r.status_code == 200, r.text
    r = await client.post(OFFSETS, json=offset("o6", 20), headers=billing)
    assert r.status_code == 201, r.text
    # Revoked: refused again; the operator needs none.
    r = await client.delete(f"{C}/members/m0/mandates/acme", headers=resident)
    assert r.status_code == 200 and r.json()["revoked_at"], r.text
    await offset_refused(client, offset("o7", 1), billing, "missing")
    assert (await client.get(f"{C}/members/m0/mandates", headers=resident)).json() == {
        "mandates": []
    }
    r = await client.post(OFFSETS, json=offset("o8", 5))
    assert r.status_code == 201 and r.json()["mandate_id"] is None, r.text


async def test_who_may_grant_and_see_mandates(client: Client) -> None:
    await shop(client)
    url = f"{C}/members/m0/mandates/acme"
    body = {"max_points_per_bill": 10}
    billing = await key(client, "property", property_company="acme")
    other = await key(client, "property", property_company="other")
    m1 = await key(client, "resident", member="m1")
    assert (await client.put(url, json=body, headers=billing)).status_code == 403
    assert (await client.put(url, json=body, headers=m1)).status_code == 404
    assert (await client.delete(url, headers=m1)).status_code == 404
    granted = await mandate(client, 10)  # an operator, recording written consent
    seen = (await client.get(f"{C}/members/m0/mandates", headers=billing)).json()
    assert [x["id"] for x in seen["mandates"]] == [granted["id"]]
    assert (await client.get(f"{C}/members/m0/mandates", headers=other)).status_code == 404
    assert (await client.get(f"{C}/members/m0/mandates", headers=m1)).status_code == 404
    # A new PUT replaces it with a new id.
    again = await mandate(client, 12)
    assert again["id"] != granted["id"] and again["max_points_per_bill"] == 12
    for bad in ({"max_points_per_bill": 0}, {"max_points_per_bill": 1, "max_points_per_year": 0}):
        assert (await client.put(url, json=bad)).status_code == 422


async def test_concurrent_offsets_never_pass_the_mandates_yearly_ceiling(client: Client) -> None:
    await shop(client)
    billing = await key(client, "property", property_company="acme")
    await mandate(client, 10, 45)
    results = await asyncio.gather(
        *(
            client.post(OFFSETS, json=offset(f"c{n}", 10, hold=n % 2 == 0), headers=billing)
            for n in range(10)
        )
    )
    codes = Counter(r.status_code for r in results)
    assert codes == {201: 4, 403: 6}, [r.text for r in results]
    listed = (await client.get(f"{C}/members/m0/mandates")).json()["mandates"]
    assert listed[0]["used_points_this_year"] == 40


async def test_a_proxy_with_spend_issues_codes_and_mandates_on_behalf(
    client: Client, dsn: str
) -> None:
    await shop(client)
    child = await key(client, "resident", member="m1")  # m1 helps m0
    url = f"{C}/members/m0/proxies/m1"
    r = await client.put(url, json={"scopes": ["read"]})
    assert r.status_code in (200, 201), r.text
    # A proxy without `spend` may not.
    r = await client.post(f"{C}/members/m0/spend-codes", json={"max_points": 5}, headers=child)
    assert r.status_code == 403, r.text
    r = await client.put(url, json={"scopes": ["read", "spend"]})
    assert r.status_code in (200, 201), r.text
    code = await spend_code(client, child, member="m0", max_points=20)
    granted = await mandate(client, 10, **child)
    assert granted["on_behalf_of"] == "m0"
    till = await key(client, "store", store="s1")
    r = await client.post(f"{C}/redemptions", json=basket("px1", spend_code=code), headers=till)
    assert r.status_code == 201, r.text
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT issued_by, on_behalf_of FROM spend_codes")
    finally:
        await conn.close()
    assert row["on_behalf_of"] == "m0" and row["issued_by"]
    # Revoked: the proxy is a stranger again (404), and its code is not renewed.
    assert (await client.delete(url)).status_code in (200, 204)
    r = await client.post(f"{C}/members/m0/spend-codes", json={"max_points": 5}, headers=child)
    assert r.status_code == 404, r.text
    r = await client.delete(f"{C}/members/m0/mandates/acme", headers=child)
    assert r.status_code == 404, r.text
