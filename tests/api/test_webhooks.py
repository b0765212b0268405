"""Webhook endpoints (SPEC section 12): create with a secret shown once, list, get,
delete; refusals of unknown events and private targets; scoping by key; events
written in the transaction of their change; and the chain head."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.test_supermarket import redemption, shelf
from tests.helpers import OFFSETS, C, Client, award, bearer, community

W = f"{C}/webhooks"


def hook(hook_id: str = "w1", url: str = "http://127.0.0.1:9/hook", **extra: Any) -> dict[str, Any]:
    return {"id": hook_id, "url": url, "events": ["transaction.posted"], **extra}


@pytest.fixture
def allow_private() -> Iterator[None]:
    os.environ["LEDGER_WEBHOOK_ALLOW_PRIVATE"] = "1"
    yield
    os.environ.pop("LEDGER_WEBHOOK_ALLOW_PRIVATE", None)


async def key(client: Client, role: str, **scope: str) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"role": role, "community": "green", **scope})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def events_of(dsn: str) -> list[tuple[str, dict[str, Any]]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT type, data::text FROM outbox_events ORDER BY seq")
    finally:
        await conn.close()
    import json

    return [(r["type"], json.loads(r["data"])) for r in rows]


async def test_create_shows_the_secret_once_then_list_get_delete(client: Client) -> None:
    await community(client)
    r = await client.post(W, json=hook(url="https://93.184.215.14/hook", description="billing"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["transaction.posted"]
    replay = await client.post(
        W, json=hook(url="https://93.184.215.14/hook", description="billing")
    )
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == created
    other = await client.post(W, json=hook(url="https://93.184.215.14/other"))
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    one = (await client.get(f"{W}/w1")).json()
    assert one["secret"] is None and one["url"] == "https://93.184.215.14/hook"
    listed = (await client.get(W)).json()
    assert [w["id"] for w in listed["webhooks"]] == ["w1"] and listed["next_cursor"] is None
    assert (await client.delete(f"{W}/w1")).status_code == 204
    assert (await client.get(f"{W}/w1")).status_code == 404
    assert (await client.get(W)).json()["webhooks"] == []


async def test_unknown_events_and_bad_or_private_urls_are_refused(client: Client) -> None:
    await community(client)
    bad = [
        {**hook(), "events": ["offset.held", "nope.never"]},
        hook(url="ftp://example.com/x"),
        hook(url="http://127.0.0.1:8080/x"),
        hook(url="http://localhost/x"),
        hook(url="http://169.254.169.254/latest/meta-data"),
        hook(url="http://10.1.2.3/x"),
        hook(url="http://[::1]/x"),
        hook(url="http://192.168.0.10/x"),
        hook(url="http://example.com:99999/x"),
        hook(url="http://example.com:port/x"),
        hook(url="http://[::1/x"),
    ]
    for body in bad:
        r = await client.post(W, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "validation_error"
    assert (await client.get(W)).json()["webhooks"] == []


async def test_private_targets_are_allowed_when_configured(
    allow_private: None, client: Client
) -> None:
    await community(client)
    r = await client.post(W, json=hook(url="http://127.0.0.1:8080/x"))
    assert r.status_code == 201, r.text


async def test_keys_see_and_receive_only_their_scope(
    allow_private: None, client: Client, dsn: str
) -> None:
    await community(client, members=2, households=2)  # h0: acme (m0), h1: other (m1)
    acme = await key(client, "property", property_company="acme")
    s1 = await key(client, "store", store="s1")
    resident = await key(client, "resident", member="m0")
    body = {**hook("acme-hook"), "events": ["transaction.posted", "offset.applied"]}
    assert (await client.post(W, json=body, headers=acme)).status_code == 201
    store_body = {**hook("s1-hook"), "events": ["redemption.created", "transaction.posted"]}
    assert (await client.post(W, json=store_body, headers=s1)).status_code == 201
    assert (await client.post(W, json=hook("r"), headers=resident)).status_code == 403
    assert (await client.get(f"{W}/s1-hook", headers=acme)).status_code == 404
    assert [w["id"] for w in (await client.get(W, headers=acme)).json()["webhooks"]] == [
        "acme-hook"
    ]
    assert {w["id"] for w in (await client.get(W)).json()["webhooks"]} == {"acme-hook", "s1-hook"}
    await award(client, "a0", "m0", 500)
    await award(client, "a1", "m1", 500)
    await shelf(client, soap=(5, 10))
    r = await client.post(f"{C}/redemptions", json=redemption("r1", ("soap", 2), member="m1"))
    assert r.status_code == 201, r.text
    conn = await asyncpg.connect(dsn)
    try:
        got = await conn.fetch(
            """SELECT d.webhook_id, e.type, e.data ->> 'member' AS member
                 FROM webhook_deliveries d
                 JOIN outbox_events e ON e.community_id = d.community_id AND e.seq = d.event_seq
                ORDER BY e.seq, d.webhook_id"""
        )
    finally:
        await conn.close()
    seen = [(g["webhook_id"], g["type"], g["member"]) for g in got]
    assert ("acme-hook", "transaction.posted", "m0") in seen
    assert all(m == "m0" for w, _, m in seen if w == "acme-hook")
    assert ("s1-hook", "redemption.created", "m1") in seen
    assert ("s1-hook", "transaction.posted", "m1") in seen
    assert all(m == "m1" for w, _, m in seen if w == "s1-hook")


async def test_a_refused_change_emits_nothing(
    allow_private: None, client: Client, dsn: str
) -> None:
    await community(client)
    body = {**hook(), "events": ["offset.held", "offset.applied", "transaction.posted"]}
    assert (await client.post(W, json=body)).status_code == 201
    offset = {"id": "o1", "member": "m0", "household": "h0", "bill_amount_fen": 10_000}
    r = await client.post(OFFSETS, json={**offset, "points": 10_000})
    assert r.status_code in (409, 422), r.text
    assert await events_of(dsn) == []
    await award(client, "a0", "m0", 200)
    r = await client.post(OFFSETS, json={**offset, "points": 100})
    assert r.status_code == 201, r.text
    types = [t for t, _ in await events_of(dsn)]
    assert types == ["transaction.posted", "transaction.posted", "offset.applied"]


async def test_audit_head_is_readable_by_every_key(client: Client) -> None:
    await community(client)
    await award(client, "a0", "m0", 100)
    resident = await key(client, "resident", member="m0")
    r = await client.get(f"{C}/audit/head", headers=resident)
    assert r.status_code == 200, r.text
    head = r.json()
    assert set(head) == {"seq", "head", "sealed_at"}
    other = await client.get("/v1/communities/nowhere/audit/head")
    assert other.status_code == 404
