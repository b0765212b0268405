"""Scheduled events: `points.expiring` notices and the daily `chain.head`.

Each is claimed in `job_runs` (per member and instant, per community and day) in
the transaction that emits it, so however many processes run the job, and however
often, each goes out once. Only communities with an endpoint subscribed are visited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg

from service.db import Conn, unit_of_work
from service.rules.book import RuleBook
from service.webhooks import store
from service.webhooks.service import audit_head


async def notify_expiring(pool: asyncpg.Pool, book: RuleBook, now: datetime | None = None) -> int:
    """One `points.expiring` per member and expiry instant, `expiry.notice_days`
    before it (from the lots of SPEC section 9); returns how many went out."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        communities = await store.listening(conn, "points.expiring")
    sent = 0
    for community in communities:
        async with pool.acquire() as conn:
            days = (await book.active(conn, community, now)).rule_set.expiry.notice_days
            until = now + timedelta(days=days)
            sent += await unit_of_work(conn, partial(_notices, conn, community, now, until))
    return sent


async def _notices(conn: Conn, community: str, now: datetime, until: datetime) -> int:
    events: list[store.Event] = []
    for row in await store.points_expiring(conn, community, now, until):
        instant = row["expires_at"].astimezone(UTC)
        slot = f"{row['member_id']}:{instant:%Y%m%dT%H%M%S.%fZ}"
        if await store.claim_slot(conn, community, "points.expiring", slot):
            data = {"member": row["member_id"], "points": row["amount"], "expires_at": instant}
            events.append(("points.expiring", data, row["property_company"], None))
    if events:
        await store.emit(conn, community, events)
    return len(events)


async def publish_heads(pool: asyncpg.Pool, now: datetime | None = None) -> int:
    """Each subscribed community's chain head, once per UTC day (run by the sealer)."""
    day = f"{(now or datetime.now(UTC)).astimezone(UTC):%Y-%m-%d}"
    async with pool.acquire() as conn:
        communities = await store.listening(conn, "chain.head")
    sent = 0
    for community in communities:
        async with pool.acquire() as conn:
            sent += await unit_of_work(conn, partial(_head, conn, community, day))
    return sent


async def _head(conn: Conn, community: str, day: str) -> int:
    if not await store.claim_slot(conn, community, "chain.head", day):
        return 0
    head = await audit_head(conn, community)
    data = {"seq": head.seq, "head": head.head, "sealed_at": head.sealed_at}
    await store.emit(conn, community, [("chain.head", data, None, None)])
    return 1
