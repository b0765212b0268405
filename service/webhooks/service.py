"""Webhook endpoints and their deliveries: one use case per function.

Events come from the statements that make their changes (`emit`, and the ledger's
write engine for everything that moves points); see sql/functions/webhooks.sql.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service.auth import Principal
from service.db import Conn, Queryable
from service.errors import IdempotencyConflict, NotFound, ValidationFailed
from service.webhooks import store
from service.webhooks.model import EVENT_TYPES, new_secret
from service.webhooks.targets import check_url

DeliveryStatus = Literal["pending", "delivered", "failed"]
Event = store.Event


class WebhookOut(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    description: str | None
    property_company: str | None
    store: str | None
    created_at: datetime
    # The signing secret: in the answer to the POST that created the endpoint only.
    secret: str | None = None


class WebhookPage(msgspec.Struct, kw_only=True):
    webhooks: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: str
    event_id: str
    event_type: str
    seq: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(msgspec.Struct, kw_only=True):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


class NewWebhook(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    request_hash: bytes


class AuditHead(msgspec.Struct, kw_only=True):
    seq: int
    head: str
    sealed_at: datetime | None


async def emit(conn: Conn, community: str, events: list[Event]) -> None:
    """Stores events in the caller's transaction, the one of the change they report."""
    await store.emit(conn, community, events)


def _scope(principal: Principal) -> tuple[str | None, str | None]:
    """The (property company, store) a key's endpoints are limited to."""
    if principal.role == "property":
        return principal.property_company, None
    if principal.role == "store":
        return None, principal.store
    return None, None


def _out(row: asyncpg.Record, *, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=row["id"],
        url=row["url"],
        events=list(row["events"]),
        description=row["description"],
        property_company=row["property_company"],
        store=row["store"],
        created_at=row["created_at"],
        secret=row["secret"] if with_secret else None,
    )


async def create(
    conn: Conn, community: str, new: NewWebhook, principal: Principal, *, allow_private: bool
) -> tuple[WebhookOut, bool]:
    """Creates an endpoint once per id, scoped as the key that creates it. A replay
    by the same key answers as the first time, secret included; the same id from
    another key or with another body is a conflict."""
    unknown = sorted(set(new.events) - EVENT_TYPES)
    if unknown:
        raise ValidationFailed(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
    await check_url(new.url, allow_private=allow_private)
    company, shop = _scope(principal)
    row = await store.insert(
        conn,
        community,
        id=new.id,
        url=new.url,
        events=list(dict.fromkeys(new.events)),
        description=new.description,
        secret=new_secret(),
        property_company=company,
        store=shop,
        request_hash=new.request_hash,
        actor=principal.key_id,
    )
    if row is not None:
        return _out(row, with_secret=True), False
    found = await store.get(conn, community, new.id)
    if (
        found is None
        or bytes(found["request_hash"]) != new.request_hash
        or found["actor"] != principal.key_id
        or found["deleted_at"] is not None
    ):
        raise IdempotencyConflict(f"webhook {new.id!r} exists; use a new id for a new endpoint")
    return _out(found, with_secret=True), True


async def _row(
    conn: Queryable, community: str, webhook_id: str, principal: Principal
) -> asyncpg.Record:
    """A live endpoint within the key's scope; others do not exist for it."""
    row = await store.get(conn, community, webhook_id)
    company, shop = _scope(principal)
    if (
        row is None
        or row["deleted_at"] is not None
        or (company is not None and row["property_company"] != company)
        or (shop is not None and row["store"] != shop)
    ):
        raise NotFound(f"no webhook {webhook_id!r} in community {community!r}")
    return row


async def get(conn: Queryable, community: str, webhook_id: str, principal: Principal) -> WebhookOut:
    return _out(await _row(conn, community, webhook_id, principal))


async def page(
    conn: Queryable, community: str, principal: Principal, cursor: str | None, limit: int
) -> WebhookPage:
    company, shop = _scope(principal)
    rows = await store.page(conn, community, cursor or "", company, shop, limit + 1)
    more = len(rows) > limit
    return WebhookPage(
        webhooks=[_out(r) for r in rows[:limit]],
        next_cursor=rows[limit - 1]["id"] if more else None,
    )


async def delete(conn: Conn, community: str, webhook_id: str, principal: Principal) -> None:
    """Stops deliveries to the endpoint; those still pending fail."""
    await _row(conn, community, webhook_id, principal)
    async with conn.transaction():
        await store.delete(conn, community, webhook_id)


def _delivery(row: asyncpg.Record) -> DeliveryOut:
    pending = row["status"] == "pending"
    return DeliveryOut(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        seq=row["event_seq"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        last_attempt_at=row["last_attempt_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


def _seq_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 2**63 - 1
    if not cursor.isdigit() or len(cursor) > 18:
        raise ValidationFailed("cursor is not one this endpoint returned")
    return int(cursor)


async def deliveries(
    conn: Queryable,
    community: str,
    webhook_id: str,
    principal: Principal,
    status: DeliveryStatus | None,
    cursor: str | None,
    limit: int,
) -> DeliveryPage:
    """The endpoint's deliveries, newest event first."""
    await _row(conn, community, webhook_id, principal)
    rows = await store.deliveries(
        conn, community, webhook_id, status, _seq_cursor(cursor), limit + 1
    )
    more = len(rows) > limit
    return DeliveryPage(
        deliveries=[_delivery(r) for r in rows[:limit]],
        next_cursor=str(rows[limit - 1]["event_seq"]) if more else None,
    )


async def retry(
    conn: Conn, community: str, webhook_id: str, delivery_id: str, principal: Principal
) -> tuple[DeliveryOut, bool]:
    """Attempts a delivery again now; one still pending is a replay (it is on its way)."""
    await _row(conn, community, webhook_id, principal)
    changed = await store.retry(conn, community, webhook_id, delivery_id)
    row = await store.delivery(conn, community, webhook_id, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r} of webhook {webhook_id!r}")
    return _delivery(row), not changed


async def audit_head(conn: Queryable, community: str) -> AuditHead:
    """The latest sealed position and hash of the community's chain."""
    row = await store.audit_head(conn, community)
    if row is None:
        raise NotFound(f"no community {community!r}")
    return AuditHead(seq=row["seq"], head=row["head"], sealed_at=row["sealed_at"])


def event_body(community: str, row: Any) -> bytes:
    """The delivered body: `{id, type, community, seq, occurred_at, data}`."""
    return msgspec.json.encode(
        {
            "id": row["event_id"],
            "type": row["type"],
            "community": community,
            "seq": row["seq"],
            "occurred_at": row["occurred_at"],
            "data": row["data"],
        }
    )
