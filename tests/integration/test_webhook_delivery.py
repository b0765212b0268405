"""Webhook delivery against a real HTTP receiver (SPEC section 12): every event type
as documented, signed; once after a restart between the change and the delivery;
retries with backoff, then `failed`; manual retry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from service.ledger.service import expire_due, seal_all
from service.rules.book import RuleBook
from service.rules.jobs import run_all
from service.webhooks import jobs, store
from service.webhooks.model import EVENT_TYPES, MAX_ATTEMPTS
from service.webhooks.worker import deliver_due
from tests.api.test_supermarket import redemption, shelf
from tests.api.test_volunteer_hours import log_body, volunteer_app
from tests.helpers import ADMIN_KEY, C, Client, award, bearer, community
from tests.integration.test_lots import END_2026, RULES, helped, publish

W = f"{C}/webhooks"


class Receiver:
    """A real HTTP server on a free port: records each request, answers the next
    status of `answers` (then 204)."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.seen.append((headers, body))
        status = self.answers.pop(0) if self.answers else 204
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.seen]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    r.server = await asyncio.start_server(r._handle, "127.0.0.1", 0)
    yield r
    r.server.close()


@pytest.fixture(autouse=True)
def allow_private() -> Iterator[None]:
    os.environ["LEDGER_WEBHOOK_ALLOW_PRIVATE"] = "1"
    yield
    os.environ.pop("LEDGER_WEBHOOK_ALLOW_PRIVATE", None)


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """The Standard Webhooks check a receiver makes, written from the spec."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(s.split(",", 1) for s in headers["webhook-signature"].split(" "))
    assert hmac.compare_digest(versions["v1"], expected)


async def subscribe(client: Client, receiver: Receiver, events: list[str], **extra: Any) -> str:
    body = {"id": "w1", "url": receiver.url, "events": events, **extra}
    r = await client.post(W, json=body)
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    return secret


async def deliver_all(pool: asyncpg.Pool) -> None:
    while await deliver_due(pool, allow_private=True):
        pass


async def ok(client: Client, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
    r = await client.post(f"{C}{path}", json=body, **kw)
    assert r.status_code in (200, 201), r.text
    found: dict[str, Any] = r.json()
    return found


async def test_every_event_type_arrives_signed_and_in_order(
    client: Client, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    await community(client, members=1)
    secret = await subscribe(client, receiver, sorted(EVENT_TYPES))
    await publish(client, RULES)  # rule_set.published
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 1000)  # transaction.posted
    offset = {"member": "m0", "household": "h0", "bill_amount_fen": 10_000, "points": 10}
    await ok(client, "/offsets", {**offset, "id": "o1", "hold": True})  # offset.held
    await ok(client, "/offsets/o1/apply")  # offset.applied
    await ok(client, "/offsets", {**offset, "id": "o2", "hold": True})
    await ok(client, "/offsets/o2/cancel")  # offset.cancelled
    await ok(client, "/offsets", {**offset, "id": "o3", "hold": True, "hold_ttl_s": 60})
    assert await expire_due(pool, now=datetime.now(UTC) + timedelta(seconds=61)) == 1
    await shelf(client, soap=(5, 10))
    await ok(client, "/redemptions", redemption("r1", ("soap", 2)))  # redemption.created
    await ok(client, "/redemptions/r1/return")  # redemption.returned
    app = await volunteer_app(client)
    await ok(client, "/volunteer-hours", log_body("vh1"), headers=app)  # logged
    await ok(client, "/volunteer-hours/vh1/approve")  # approved
    await ok(client, "/volunteer-hours", log_body("vh2"), headers=app)
    await ok(client, "/volunteer-hours/vh2/reject")  # rejected
    book = RuleBook()
    assert await jobs.notify_expiring(pool, book, END_2026 - timedelta(days=10)) == 1
    assert await jobs.notify_expiring(pool, book, END_2026 - timedelta(days=9)) == 0  # once
    assert await run_all(pool, book, now=END_2026 + timedelta(seconds=1)) >= 1  # expired
    await seal_all(pool)
    assert await jobs.publish_heads(pool) == 1  # chain.head, once a day
    assert await jobs.publish_heads(pool) == 0
    await deliver_all(pool)

    bodies = receiver.bodies()
    assert {b["type"] for b in bodies} == EVENT_TYPES
    for (headers, raw), b in zip(receiver.seen, bodies, strict=True):
        verify(secret, headers, raw)
        assert headers["webhook-id"] == b["id"] and b["id"].startswith("evt_")
        assert set(b) == {"id", "type", "community", "seq", "occurred_at", "data"}
        assert b["community"] == "green"
        assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    seqs = [b["seq"] for b in bodies]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    by_type = {b["type"]: b["data"] for b in bodies}
    assert by_type["offset.applied"]["offset"] == "o1"
    assert by_type["offset.cancelled"]["offset"] == "o2"
    assert by_type["offset.expired"]["offset"] == "o3"
    assert by_type["redemption.returned"]["return"] is not None
    assert by_type["volunteer_hours.rejected"]["volunteer_hours"] == "vh2"
    assert by_type["points.expiring"]["member"] == "m0"
    assert by_type["chain.head"]["seq"] >= 1 and len(by_type["chain.head"]["head"]) == 64
    r = await client.get(f"{W}/w1/deliveries", params={"status": "delivered", "limit": 500})
    assert len(r.json()["deliveries"]) == len(bodies)


async def test_a_restart_between_change_and_delivery_delivers_once(
    dsn: str, receiver: Receiver
) -> None:
    os.environ["LEDGER_ADMIN_KEY"] = ADMIN_KEY
    first = create_app(load_settings(), dsn=dsn, scheduler=False)
    async with AsyncTestClient(first) as c:
        c.headers.update(bearer(ADMIN_KEY))
        await community(c, members=1)
        await subscribe(c, receiver, ["transaction.posted"])
        await award(c, "a0", "m0", 50)
    assert receiver.seen == []  # stopped before any delivery
    second = create_app(load_settings(), dsn=dsn, scheduler=True)
    async with AsyncTestClient(second):
        for _ in range(100):
            if receiver.seen:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # two more ticks of the worker: nothing more is sent
    assert [b["data"]["transaction"] for b in receiver.bodies()] == ["a0"]


async def test_a_failed_attempt_is_retried_with_backoff_then_fails(
    client: Client, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    await community(client, members=1)
    await subscribe(client, receiver, ["transaction.posted"])
    receiver.answers = [500]
    await award(client, "a0", "m0", 50)
    assert await deliver_due(pool, allow_private=True) == 1
    assert await deliver_due(pool, allow_private=True) == 0  # not due yet
    [d] = (await client.get(f"{W}/w1/deliveries")).json()["deliveries"]
    assert (d["status"], d["attempts"], d["last_status"]) == ("pending", 1, 500)
    wait = datetime.fromisoformat(d["next_attempt_at"]) - datetime.fromisoformat(
        d["last_attempt_at"]
    )
    assert 4.4 <= wait.total_seconds() <= 5.6  # ~5 s, with jitter
    async with pool.acquire() as conn:  # the clock moves on
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")
    assert await deliver_due(pool, allow_private=True) == 1
    [d] = (await client.get(f"{W}/w1/deliveries")).json()["deliveries"]
    assert (d["status"], d["attempts"], d["last_status"]) == ("delivered", 2, 204)
    first, second = receiver.seen
    assert first[0]["webhook-id"] == second[0]["webhook-id"]  # the same event again

    # Manual retry of a delivered one sends it again; the last failure gives up.
    r = await client.post(f"{W}/w1/deliveries/{d['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    receiver.answers = [503]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhook_deliveries SET attempts = $1", MAX_ATTEMPTS - 1)
    assert await deliver_due(pool, allow_private=True) == 1
    [d] = (await client.get(f"{W}/w1/deliveries", params={"status": "failed"})).json()["deliveries"]
    assert (d["attempts"], d["last_status"], d["next_attempt_at"]) == (MAX_ATTEMPTS, 503, None)
    assert len(receiver.seen) == 3


async def test_a_failure_pauses_the_rest_of_the_endpoints_backlog(
    client: Client, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    """One endpoint's deliveries go one after another in seq order; when one fails the
    later ones are not attempted in that pass, and are due again after a pause."""
    await community(client, members=1)
    await subscribe(client, receiver, ["transaction.posted"])
    for n in range(3):
        await award(client, f"a{n}", "m0", 10)
    receiver.answers = [204, 500]
    assert await deliver_due(pool, allow_private=True) == 2
    assert [b["data"]["transaction"] for b in receiver.bodies()] == ["a0", "a1"]
    page = (await client.get(f"{W}/w1/deliveries")).json()["deliveries"]
    got = {d["seq"]: (d["status"], d["attempts"]) for d in page}
    assert [got[s] for s in sorted(got)] == [("delivered", 1), ("pending", 1), ("pending", 0)]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")
    assert await deliver_due(pool, allow_private=True) == 2
    assert [b["data"]["transaction"] for b in receiver.bodies()] == ["a0", "a1", "a1", "a2"]


async def test_the_claim_per_community_takes_what_the_one_statement_takes(
    client: Client, pool: asyncpg.Pool, receiver: Receiver, citus: bool
) -> None:
    """Citus's form of the claim (`webhook_claim` per community with due deliveries,
    docs/scaling.md), also on one server: the due deliveries in seq order, each
    leased once; then delivery through it, as the worker does on a cluster."""
    await community(client, members=1)
    await subscribe(client, receiver, ["transaction.posted"])
    for n in range(3):
        await award(client, f"a{n}", "m0", 10 + n)
    async with pool.acquire() as conn:
        rows = await store.claim(conn, 50, 60.0, 10, citus=True)
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
        assert len(rows) == 3 and {r["community_id"] for r in rows} == {"green"}
        assert await store.claim(conn, 50, 60.0, 10, citus=True) == []  # leased
        if not citus:  # (Citus refuses the one statement)
            assert await store.claim(conn, 50, 60.0, 10) == []  # it agrees
        await store.release(conn, "green", [r["id"] for r in rows], 0)
    pool.citus = True  # type: ignore[attr-defined]  # what `on_citus` finds on a cluster
    await deliver_all(pool)
    assert [b["data"]["transaction"] for b in receiver.bodies()] == ["a0", "a1", "a2"]
