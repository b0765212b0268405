"""asyncpg calls of people, one function per named query (sql/queries/people.sql)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from service.db import Conn, Queryable, q


async def proxy_scopes(
    conn: Queryable, community: str, member: str, proxy: str
) -> list[str] | None:
    """The scopes `proxy` holds for `member` now, or None when it holds none."""
    scopes: list[str] | None = await conn.fetchval(q("proxy_scopes"), community, member, proxy)
    return scopes


async def grant(
    conn: Conn, community: str, member: str, proxy: str, scopes: Sequence[str], actor: str
) -> asyncpg.Record:
    """The grant in force after this one. An unknown member or proxy raises
    asyncpg's ForeignKeyViolationError, naming the constraint it broke."""
    row = await conn.fetchrow(q("proxy_grant"), community, member, proxy, scopes, actor)
    assert row is not None
    return row


async def revoke(
    conn: Conn, community: str, member: str, proxy: str, actor: str
) -> asyncpg.Record | None:
    """The grant just revoked; None when none was in force."""
    return await conn.fetchrow(q("proxy_revoke"), community, member, proxy, actor)


async def proxies_of(conn: Queryable, community: str, member: str) -> list[asyncpg.Record]:
    """The grants in force for `member`, by proxy id."""
    return await conn.fetch(q("proxies_of_member"), community, member)


async def proxies_held_by(conn: Queryable, community: str, proxy: str) -> list[asyncpg.Record]:
    """The grants in force that `proxy` holds for other members, by member id."""
    return await conn.fetch(q("proxies_held_by"), community, proxy)
