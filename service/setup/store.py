"""asyncpg calls of setup (communities, households, members), one function per named query."""

from __future__ import annotations

import asyncpg

from service.db import Conn, Queryable, q


async def insert_community(
    conn: Conn,
    ident: str,
    name: str,
    timezone: str,
    request_hash: bytes,
    addresses: list[str],
    assets: list[str],
) -> bool:
    """Inserts the community with its chain head and system accounts `addresses`
    (of `assets`, pairwise) unless its id exists; True when it was new."""
    created: bool = await conn.fetchval(
        q("community_insert"), ident, name, timezone, request_hash, addresses, assets
    )
    return created


async def community(conn: Queryable, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("community_get"), ident)


async def community_ids(conn: Queryable) -> list[str]:
    return [r["id"] for r in await conn.fetch(q("community_ids"))]


async def insert_household(
    conn: Conn,
    community: str,
    ident: str,
    address: str | None,
    property_company: str,
    request_hash: bytes,
) -> bool:
    """True when the household was new (its id was free)."""
    inserted = await conn.fetchval(
        q("household_insert"), community, ident, address, property_company, request_hash
    )
    return inserted is not None


async def household(conn: Conn, community: str, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("household_get"), community, ident)


async def insert_member(
    conn: Conn, community: str, ident: str, household: str, name: str | None, request_hash: bytes
) -> bool:
    """True when the member was new (its id was free)."""
    inserted = await conn.fetchval(
        q("member_insert"), community, ident, household, name, request_hash
    )
    return inserted is not None


async def open_member_accounts(conn: Conn, community: str, ident: str) -> None:
    """Opens the member's minutes and points accounts."""
    await conn.execute(q("member_open_accounts"), community, ident)


async def member(conn: Conn, community: str, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("member_get"), community, ident)
