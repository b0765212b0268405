"""asyncpg calls of the time bank's volunteer hours, one function per named query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from service.db import Conn, Queryable, q


async def insert_hours(
    conn: Conn,
    community: str,
    hours_id: str,
    member: str,
    activity: str,
    started_at: datetime,
    minutes: int,
    organiser: str | None,
    status: str,
    request_hash: bytes,
    actor: str,
    team: str | None,
    approvals_needed: int,
    member_community: str | None = None,
) -> asyncpg.Record | None:
    """The hours' new row (decided now when `status` is 'approved'); None when the
    id exists. An unknown member raises asyncpg's ForeignKeyViolationError."""
    return await conn.fetchrow(
        q("hours_insert"),
        community,
        hours_id,
        member,
        activity,
        started_at,
        minutes,
        organiser,
        status,
        request_hash,
        actor,
        team,
        approvals_needed,
        member_community,
    )


async def get_hours(conn: Queryable, community: str, hours_id: str) -> asyncpg.Record | None:
    """The hours' row with its approvals (`approval_keys`, `approval_times`)."""
    return await conn.fetchrow(q("hours_get"), community, hours_id)


async def lock_hours(conn: Conn, community: str, hours_id: str) -> asyncpg.Record | None:
    """The hours' row, locked until the transaction ends."""
    return await conn.fetchrow(q("hours_lock"), community, hours_id)


async def decide_hours(
    conn: Conn, community: str, hours_id: str, status: str, actor: str
) -> asyncpg.Record:
    """Marks locked hours approved or rejected by `actor`, now."""
    row = await conn.fetchrow(q("hours_decide"), community, hours_id, status, actor)
    assert row is not None
    return row


async def add_approval(conn: Conn, community: str, hours_id: str, key_id: str) -> bool:
    """Records key `key_id`'s approval of locked hours; False if it had approved already."""
    return await conn.fetchval(q("hours_approval_add"), community, hours_id, key_id) is not None


async def approvals(conn: Conn, community: str, hours_id: str) -> list[asyncpg.Record]:
    """The hours' approvals (`key_id`, `approved_at`), in the order they were given."""
    return await conn.fetch(q("hours_approvals"), community, hours_id)


async def hours_page(
    conn: Queryable,
    community: str,
    statuses: Sequence[str],
    team: str | None,
    teams: Sequence[str] | None,
    member: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to `limit` hours after `after` (created_at, id), oldest first, with their
    approvals as `get_hours` has them."""
    after_at, after_id = (None, None) if after is None else after
    return await conn.fetch(
        q("hours_page"),
        community,
        list(statuses),
        team,
        None if teams is None else list(teams),
        member,
        after_at,
        after_id,
        limit,
    )
