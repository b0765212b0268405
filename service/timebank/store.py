"""asyncpg calls of the time bank's volunteer hours, one function per named query."""

from __future__ import annotations

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
    )


async def get_hours(conn: Queryable, community: str, hours_id: str) -> asyncpg.Record | None:
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
