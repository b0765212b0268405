"""Proxies (亲情代理, SPEC section 11): a member's resident key acting for another
member within the scopes granted, and nothing beyond them.

Attacker's tests first: a resident acting for someone who is not its principal, a
revoked proxy, a proxy beyond its scopes, a proxy managing proxies, a key of another
community. Every refusal changes nothing; every test ends with the audit passing
(the `dsn` fixture).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from service.auth import Principal
from service.db import create_pool
from service.errors import Forbidden
from service.people.service import acting_for
from tests.helpers import C, Client, award, balance, bearer, community, transfer

TIMEBANK = "system:timebank:minutes"


async def _key(client: Client, member: str, community_id: str = "green") -> tuple[str, Any]:
    body = {"role": "resident", "community": community_id, "member": member}
    r = await client.post("/v1/api-keys", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"], bearer(r.json()["key"])


async def _bank(client: Client, tx_id: str, member: str, minutes: int) -> None:
    body = transfer(tx_id, TIMEBANK, f"member:{member}:minutes", minutes, asset="minutes")
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


async def _grant(client: Client, m: str, p: str, scopes: list[str], **kw: Any) -> Any:
    return await client.put(f"{C}/members/{m}/proxies/{p}", json={"scopes": scopes}, **kw)


def _gift(tx_id: str, source: str, to: str, minutes: int) -> dict[str, Any]:
    return {"id": tx_id, "from_member": source, "to_member": to, "minutes": minutes}


async def _reads(client: Client, member: str, headers: Any) -> list[int]:
    paths = ["", "/balance", "/statement", "/lots", "/proxies"]
    return [
        (await client.get(f"{C}/members/{member}{path}", headers=headers)).status_code
        for path in paths
    ]


async def _grants(dsn: str) -> list[tuple[str, str, list[str], bool]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT member_id, proxy_id, scopes, revoked_at IS NULL AS active FROM proxies"
            " ORDER BY member_id, proxy_id"
        )
    finally:
        await conn.close()
    return [(r["member_id"], r["proxy_id"], list(r["scopes"]), r["active"]) for r in rows]


async def _minutes(client: Client, member: str) -> int:
    minutes: int = (await balance(client, member))["minutes"]["balance"]
    return minutes


async def test_a_resident_acts_for_no_one_who_is_not_its_principal(
    client: Client, dsn: str
) -> None:
    await community(client, members=3)
    await _bank(client, "b1", "m1", 30)
    _, m0 = await _key(client, "m0")
    # m1 has granted m2 (not m0) a proxy: m0 still sees nothing of m1.
    assert (await _grant(client, "m1", "m2", ["read", "time"])).status_code == 200
    assert await _reads(client, "m1", m0) == [404] * 5
    unknown = await client.get(f"{C}/members/m9/balance", headers=m0)
    theirs = await client.get(f"{C}/members/m1/balance", headers=m0)
    assert unknown.status_code == theirs.status_code == 404
    assert theirs.json()["detail"] == "no member 'm1' in community 'green'"  # no probing
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m1", "m0", 5), headers=m0)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = await client.patch(f"{C}/members/m1", json={"leaderboard_opt_out": True}, headers=m0)
    assert r.status_code == 404
    assert (await _grant(client, "m1", "m0", ["read"], headers=m0)).status_code == 404
    assert (await client.delete(f"{C}/members/m1/proxies/m2", headers=m0)).status_code == 404
    # Nothing changed.
    assert await _minutes(client, "m1") == 30 and await _minutes(client, "m0") == 0
    assert (await client.get(f"{C}/transactions/g1")).status_code == 404
    assert await _grants(dsn) == [("m1", "m2", ["read", "time"], True)]


async def test_a_proxy_reads_its_principals_balance_statement_and_lots(client: Client) -> None:
    await community(client, members=3)
    await award(client, "a1", "m0", 40)
    _, m1 = await _key(client, "m1")
    r = await _grant(client, "m0", "m1", ["read"])
    assert r.status_code == 200, r.text
    grant = r.json()
    assert grant["member"] == "m0" and grant["proxy"] == "m1" and grant["scopes"] == ["read"]
    assert grant["granted_by"] == "env-admin" and grant["revoked_at"] is None
    assert await _reads(client, "m0", m1) == [200] * 5
    r = await client.get(f"{C}/members/m0/balance", headers=m1)
    assert r.json()["points"]["score"] == 140
    statement = (await client.get(f"{C}/members/m0/statement", headers=m1)).json()
    assert statement["entries"][0]["transaction_id"] == "a1"
    listed = (await client.get(f"{C}/members/m0/proxies", headers=m1)).json()
    assert [(p["proxy"], p["scopes"]) for p in listed["proxies"]] == [("m1", ["read"])]
    # A proxy of m0 is no proxy of m2.
    assert await _reads(client, "m2", m1) == [404] * 5


async def test_a_proxy_without_the_scope_is_refused_and_changes_nothing(
    client: Client, dsn: str
) -> None:
    await community(client, members=3)
    await _bank(client, "b1", "m0", 30)
    _, m1 = await _key(client, "m1")
    assert (await _grant(client, "m0", "m1", ["read", "spend"])).status_code == 200
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m2", 5), headers=m1)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert "'time'" in r.json()["detail"]
    # A proxy to give minutes only may not read.
    assert (await _grant(client, "m0", "m1", ["time"])).status_code == 200
    r = await client.get(f"{C}/members/m0/balance", headers=m1)
    assert r.status_code == 403 and "'read'" in r.json()["detail"]
    assert await _minutes(client, "m0") == 30 and await _minutes(client, "m2") == 0
    assert (await client.get(f"{C}/transactions/g1")).status_code == 404
    assert await _grants(dsn) == [("m0", "m1", ["time"], True)]


async def test_a_proxy_gives_its_principals_minutes_and_the_statement_says_so(
    client: Client,
) -> None:
    await community(client, members=3)
    await _bank(client, "b1", "m0", 30)
    m0_id, m0 = await _key(client, "m0")
    m1_id, m1 = await _key(client, "m1")
    r = await _grant(client, "m0", "m1", ["time"], headers=m0)  # m0 grants it itself
    assert r.status_code == 200 and r.json()["granted_by"] == m0_id, r.text
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m2", 10), headers=m1)
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/time-transfers", json=_gift("g2", "m0", "m2", 5), headers=m0)
    assert r.status_code == 201, r.text
    assert await _minutes(client, "m0") == 15 and await _minutes(client, "m2") == 15
    page = await client.get(f"{C}/members/m0/statement", params={"asset": "minutes"})
    entries = {e["transaction_id"]: e for e in page.json()["entries"]}
    assert (entries["g1"]["actor"], entries["g1"]["on_behalf_of"]) == (m1_id, "m0")
    assert (entries["g2"]["actor"], entries["g2"]["on_behalf_of"]) == (m0_id, None)
    assert entries["b1"]["on_behalf_of"] is None
    theirs = await client.get(f"{C}/members/m2/statement", params={"asset": "minutes"})
    gift = next(e for e in theirs.json()["entries"] if e["transaction_id"] == "g1")
    assert (gift["actor"], gift["on_behalf_of"], gift["amount"]) == (m1_id, "m0", 10)
    # A replay by the proxy is the original, recorded once.
    again = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m2", 10), headers=m1)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert await _minutes(client, "m0") == 15


async def test_a_revoked_proxy_is_refused_at_once(client: Client, dsn: str) -> None:
    await community(client, members=3)
    await _bank(client, "b1", "m0", 30)
    m0_id, m0 = await _key(client, "m0")
    _, m1 = await _key(client, "m1")
    assert (await _grant(client, "m0", "m1", ["read", "time"])).status_code == 200
    assert (await client.get(f"{C}/members/m0/balance", headers=m1)).status_code == 200
    r = await client.delete(f"{C}/members/m0/proxies/m1", headers=m0)
    assert r.status_code == 200, r.text
    assert r.json()["revoked_by"] == m0_id and r.json()["revoked_at"] is not None
    assert await _reads(client, "m0", m1) == [404] * 5
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m1", 5), headers=m1)
    assert r.status_code == 404, r.text
    assert (await client.delete(f"{C}/members/m0/proxies/m1", headers=m0)).status_code == 404
    assert (await client.get(f"{C}/members/m0/proxies", headers=m0)).json() == {"proxies": []}
    assert await _minutes(client, "m0") == 30 and await _minutes(client, "m1") == 0
    assert await _grants(dsn) == [("m0", "m1", ["read", "time"], False)]
    # Granted again: the revocation is cleared, the new scopes hold.
    r = await _grant(client, "m0", "m1", ["read"], headers=m0)
    assert r.status_code == 200 and r.json()["revoked_by"] is None, r.text
    assert (await client.get(f"{C}/members/m0/balance", headers=m1)).status_code == 200
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m1", 5), headers=m1)
    assert r.status_code == 403
    assert await _grants(dsn) == [("m0", "m1", ["read"], True)]


async def test_a_proxy_cannot_grant_or_revoke_proxies_for_its_principal(
    client: Client, dsn: str
) -> None:
    await community(client, members=3)
    _, m1 = await _key(client, "m1")
    _, m2 = await _key(client, "m2")
    assert (await _grant(client, "m0", "m1", ["read", "spend", "time"])).status_code == 200
    for r in (
        await _grant(client, "m0", "m2", ["read"], headers=m1),
        await client.delete(f"{C}/members/m0/proxies/m1", headers=m1),
        await client.patch(f"{C}/members/m0", json={"leaderboard_opt_out": True}, headers=m1),
    ):
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    # Nor can a member make itself someone's proxy.
    assert (await _grant(client, "m0", "m2", ["read"], headers=m2)).status_code == 404
    assert await _grants(dsn) == [("m0", "m1", ["read", "spend", "time"], True)]


async def test_grants_are_checked_before_anything_is_stored(client: Client, dsn: str) -> None:
    await community(client, members=2)
    _, m0 = await _key(client, "m0")
    r = await _grant(client, "m0", "m0", ["read"], headers=m0)
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert (await _grant(client, "m0", "m9", ["read"], headers=m0)).status_code == 404
    r = await _grant(client, "m9", "m0", ["read"])
    assert r.status_code == 404 and "'m9'" in r.json()["detail"]
    assert (await client.get(f"{C}/members/m9/proxies")).status_code == 404
    for bad in (
        {"scopes": []},
        {"scopes": ["write"]},
        {"scopes": "read"},
        {},
        {"scopes": ["read"], "x": 1},
    ):
        r = await client.put(f"{C}/members/m0/proxies/m1", json=bad, headers=m0)
        assert r.status_code == 422, (bad, r.text)
    assert await _grants(dsn) == []
    # Scopes are stored once each, in their fixed order.
    r = await _grant(client, "m0", "m1", ["time", "read", "read"], headers=m0)
    assert r.status_code == 200 and r.json()["scopes"] == ["read", "time"], r.text
    assert (await client.delete(f"{C}/members/m0/proxies/m9", headers=m0)).status_code == 404


async def test_a_key_of_another_community_is_refused(client: Client, dsn: str) -> None:
    await community(client, members=2)
    await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    blue = "/v1/communities/blue"
    r = await client.post(f"{blue}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    for m in ("m0", "m1"):
        r = await client.post(f"{blue}/members", json={"id": m, "household": "h0"})
        assert r.status_code == 201, r.text
    assert (await _grant(client, "m0", "m1", ["read", "time"])).status_code == 200
    _, blue_m1 = await _key(client, "m1", "blue")  # the same member id, another person
    r = await client.get(f"{C}/members/m0/balance", headers=blue_m1)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post(f"{C}/time-transfers", json=_gift("g1", "m0", "m1", 1), headers=blue_m1)
    assert r.status_code == 403
    # acting_for itself refuses it too, whoever calls it: its member ids are blue's.
    principal = Principal(key_id="k", role="resident", community="blue", member="m1")
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        for member in ("m0", "m1"):
            with pytest.raises(Forbidden):
                await acting_for(pool, principal, "green", member, "read")
        assert await acting_for(pool, principal, "blue", "m1", "read") is None
    finally:
        await pool.close()
