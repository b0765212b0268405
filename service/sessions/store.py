"""asyncpg calls for sign-in links and sessions, one function per named query
(sql/queries/app.sql)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from service.db import Queryable, q


async def insert_link(
    conn: Queryable,
    community: str,
    link_id: str,
    token_hash: bytes,
    member: str | None,
    key_id: str | None,
    issued_by: str,
    ttl_s: int,
) -> datetime:
    expires_at: datetime = await conn.fetchval(
        q("link_insert"), community, link_id, token_hash, member, key_id, issued_by, float(ttl_s)
    )
    return expires_at


async def use_link(conn: Queryable, community: str, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(q("link_use"), community, token_hash)


async def insert_session(
    conn: Queryable,
    id_hash: bytes,
    role: str,
    key_id: str | None,
    community: str | None,
    member: str | None,
    link_id: str | None,
    csrf: str,
    ttl_s: int,
) -> None:
    await conn.execute(
        q("session_insert"),
        id_hash,
        role,
        key_id,
        community,
        member,
        link_id,
        csrf,
        float(ttl_s),
    )


async def get_session(conn: Queryable, id_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(q("session_get"), id_hash)


async def end_session(conn: Queryable, id_hash: bytes) -> None:
    await conn.execute(q("session_end"), id_hash)


async def purge(conn: Queryable) -> None:
    await conn.execute(q("sessions_purge"))
