"""asyncpg calls of webhooks, one per named query (sql/queries/webhooks.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from service.db import Conn, Queryable, q

# One event to emit: (type, data, property_company, store), as `webhook_event`.
Event = tuple[str, dict[str, Any], str | None, str | None]


async def emit(conn: Conn, community: str, events: list[Event]) -> int:
    """Writes the events someone listens to, with their deliveries; in the caller's
    transaction, which must be the one of the change they report."""
    found: int = await conn.fetchval(q("webhook_emit"), community, events)
    return found


async def insert(conn: Conn, community: str, **fields: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(
        q("webhook_insert"),
        community,
        fields["id"],
        fields["url"],
        fields["events"],
        fields["description"],
        fields["secret"],
        fields["property_company"],
        fields["store"],
        fields["request_hash"],
        fields["actor"],
    )


async def get(conn: Queryable, community: str, webhook_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("webhook_get"), community, webhook_id)


async def page(
    conn: Queryable, community: str, after: str, company: str | None, store: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(q("webhook_list"), community, after, company, store, limit)


async def delete(conn: Conn, community: str, webhook_id: str) -> None:
    await conn.execute(q("webhook_delete"), community, webhook_id)


async def deliveries(
    conn: Queryable, community: str, webhook_id: str, status: str | None, before: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(q("delivery_list"), community, webhook_id, status, before, limit)


async def delivery(
    conn: Queryable, community: str, webhook_id: str, delivery_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(q("delivery_get"), community, webhook_id, delivery_id)


async def retry(conn: Conn, community: str, webhook_id: str, delivery_id: str) -> bool:
    return await conn.fetchval(q("delivery_retry"), community, webhook_id, delivery_id) is not None


async def claim(
    conn: Queryable, endpoints: int, lease_s: float, per_endpoint: int, *, citus: bool = False
) -> list[asyncpg.Record]:
    """Due deliveries of up to `endpoints` endpoints, leased. One statement across
    every community; on Citus, which refuses it, one delegated call per community
    with due deliveries (docs/scaling.md)."""
    if not citus:
        return await conn.fetch(q("delivery_claim"), endpoints, lease_s, per_endpoint)
    rows: list[asyncpg.Record] = []
    for (community,) in await conn.fetch(q("delivery_due_communities"), endpoints):
        left = endpoints - len({(r["community_id"], r["webhook_id"]) for r in rows})
        if left <= 0:
            break
        rows += await conn.fetch(q("delivery_claim_of"), community, left, lease_s, per_endpoint)
    return rows


async def release(conn: Queryable, community: str, delivery_ids: list[str], pause_s: float) -> None:
    await conn.execute(q("delivery_release"), community, delivery_ids, pause_s)


async def succeeded(conn: Queryable, community: str, delivery_id: str, status: int) -> None:
    await conn.execute(q("delivery_succeeded"), community, delivery_id, status)


async def attempt_failed(
    conn: Queryable,
    community: str,
    delivery_id: str,
    status: int | None,
    error: str,
    retry_in_s: float | None,
) -> None:
    await conn.execute(
        q("delivery_attempt_failed"), community, delivery_id, status, error, retry_in_s
    )


async def listening(conn: Queryable, event_type: str) -> list[str]:
    return [r["community_id"] for r in await conn.fetch(q("webhook_listening"), event_type)]


async def claim_slot(conn: Conn, community: str, job: str, slot: str) -> bool:
    return await conn.fetchval(q("webhook_claim_slot"), community, job, slot) is not None


async def points_expiring(
    conn: Queryable, community: str, now: datetime, until: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(q("points_expiring"), community, now, until)


async def audit_head(conn: Queryable, community: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("audit_head"), community)
