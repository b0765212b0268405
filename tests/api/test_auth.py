"""Keys: who may call what, in which community; secrets are shown once and stored hashed."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg

from tests.helpers import C, Client, award, bearer, community, transfer


async def _key(client: Client, **scope: Any) -> tuple[str, dict[str, str]]:
    r = await client.post("/v1/api-keys", json=scope)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], bearer(body["key"])


async def test_missing_or_invalid_key_is_401(client: Client) -> None:
    await community(client)
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer plk_0000_secret"},
    ):
        r = await client.get(f"{C}/members/m0/balance", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_operator_scope(client: Client) -> None:
    await community(client)
    await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    _, op = await _key(client, role="operator", community="green")
    r = await client.post(
        f"{C}/transactions",
        json=transfer("t1", "system:issuance:points", "member:m0:points", 5),
        headers=op,
    )
    assert r.status_code == 201
    r = await client.get("/v1/communities/blue/audit/verify", headers=op)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post("/v1/communities", json={"id": "red", "name": "Red"}, headers=op)
    assert r.status_code == 403
    r = await client.post("/v1/api-keys", json={"role": "admin"}, headers=op)
    assert r.status_code == 403
    r = await client.post(
        "/v1/api-keys", json={"role": "operator", "community": "blue"}, headers=op
    )
    assert r.status_code == 403


async def test_resident_reads_only_itself(client: Client) -> None:
    await community(client)
    _, me = await _key(client, role="resident", community="green", member="m0")
    assert (await client.get(f"{C}/members/m0/balance", headers=me)).status_code == 200
    assert (await client.get(f"{C}/members/m0/statement", headers=me)).status_code == 200
    assert (await client.get(f"{C}/members/m1/balance", headers=me)).status_code == 404
    assert (await client.get(f"{C}/members/m1/statement", headers=me)).status_code == 404
    body = transfer("t1", "member:m0:points", "store:s1:redemptions", 1)
    assert (await client.post(f"{C}/transactions", json=body, headers=me)).status_code == 403


async def test_property_reads_members_of_households_it_serves(client: Client) -> None:
    await community(client, members=2, households=2)  # h0 acme, h1 other
    _, acme = await _key(client, role="property", community="green", property_company="acme")
    assert (await client.get(f"{C}/members/m0/balance", headers=acme)).status_code == 200
    assert (await client.get(f"{C}/members/m1/balance", headers=acme)).status_code == 404
    assert (await client.get(f"{C}/members/m0/statement", headers=acme)).status_code == 403


async def test_revoked_key_stops_working_and_secret_is_hashed(client: Client, dsn: str) -> None:
    await community(client)
    await award(client, "a1", "m0", 5)
    key_id, op = await _key(client, role="operator", community="green")
    assert (await client.get(f"{C}/audit/verify", headers=op)).status_code == 200
    assert (await client.delete(f"/v1/api-keys/{key_id}")).status_code == 204
    assert (await client.get(f"{C}/audit/verify", headers=op)).status_code == 401
    assert (await client.delete(f"/v1/api-keys/{key_id}")).status_code == 404
    secret = op["Authorization"].split("_", 2)[2]
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT secret_hash FROM api_keys WHERE id = $1", key_id)
        dump = await conn.fetchval("SELECT string_agg(t::text, ',') FROM api_keys t")
    finally:
        await conn.close()
    assert bytes(stored) == hashlib.sha256(secret.encode()).digest()
    assert secret not in dump


async def test_key_scope_fields_are_checked(client: Client) -> None:
    await community(client)
    for scope in (
        {"role": "resident", "community": "green"},
        {"role": "operator"},
        {"role": "admin", "community": "green"},
        {"role": "store", "community": "green", "member": "m0"},
        {"role": "operator", "community": "nope"},
    ):
        r = await client.post("/v1/api-keys", json=scope)
        assert r.status_code in (404, 422), (scope, r.text)


async def test_public_endpoints(client: Client) -> None:
    assert (await client.get("/health", headers={"Authorization": ""})).json() == {"status": "ok"}
    assert (await client.get("/ready", headers={"Authorization": ""})).status_code == 200
    schema = await client.get("/schema/openapi.json", headers={"Authorization": ""})
    assert (
        schema.status_code == 200 and "/v1/communities/{c}/transactions" in schema.json()["paths"]
    )
    metrics = await client.get("/metrics", headers={"Authorization": ""})
    assert metrics.status_code == 200 and "ledger_requests_total" in metrics.text


async def test_metrics_count_requests_by_route_and_status(client: Client) -> None:
    """Requests are counted by route template (not by raw path) and by status."""
    refused = await client.get(
        "/v1/communities/demo/members/m-42/balance", headers={"Authorization": ""}
    )
    assert refused.status_code == 401 and refused.headers["x-request-id"]
    text = (await client.get("/metrics", headers={"Authorization": ""})).text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("ledger_requests_total{")
        and 'path="/v1/communities/{c}/members/{m}/balance"' in line
        and 'status_code="401"' in line
    ]
    assert len(counted) == 1 and float(counted[0].rsplit(" ", 1)[1]) >= 1, text
    assert "m-42" not in text  # raw paths would make one series per member
    assert "ledger_request_duration_seconds_bucket" in text


async def test_requests_the_router_refuses_carry_a_request_id_and_are_counted(
    client: Client,
) -> None:
    """An unknown path or method never reaches a route (nor the per-route request
    middleware): the 404/405 still echoes the request id and is counted, under one
    path label rather than one series per raw path."""
    unknown = await client.get("/v1/no-such-thing/42", headers={"X-Request-ID": "trace-1"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert unknown.headers["x-request-id"] == "trace-1"
    wrong = await client.delete(f"{C}/transactions")
    assert wrong.status_code == 405 and wrong.headers["x-request-id"]
    handled = await client.get(f"{C}/transactions/nope")  # a route's own 404: one id
    assert handled.status_code == 404 and "," not in handled.headers["x-request-id"]
    text = (await client.get("/metrics", headers={"Authorization": ""})).text
    for method, status in (("GET", "404"), ("DELETE", "405")):
        assert any(
            line.startswith("ledger_requests_total{")
            and 'path="(unmatched)"' in line
            and f'method="{method}"' in line
            and f'status_code="{status}"' in line
            for line in text.splitlines()
        ), text
    assert "no-such-thing" not in text
