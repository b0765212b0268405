"""asyncpg calls of setup (communities, households, members), one function per named query."""

from __future__ import annotations

import asyncpg

from service.db import Conn, Queryable, q


async def insert_community(
    conn: Conn,
    ident: str,
    name: str,
    timezone: str,
    language: str,
    request_hash: bytes,
    addresses: list[str],
    assets: list[str],
) -> bool:
    """Inserts the community with its chain head and system accounts `addresses`
    (of `assets`, pairwise) unless its id exists; True when it was new."""
    created: bool = await conn.fetchval(
        q("community_insert"), ident, name, timezone, language, request_hash, addresses, assets
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


# Member lifecycle (service/setup/lifecycle.py).


async def lock_member_accounts(conn: Conn, community: str, ident: str) -> list[asyncpg.Record]:
    """The member's accounts, locked in address order (empty: no such member)."""
    return await conn.fetch(q("member_lock_accounts"), community, ident)


async def pending_on(conn: Conn, community: str, addresses: list[str]) -> list[str]:
    """Client ids of pending transactions naming any of `addresses` (at most 20)."""
    return [r["client_id"] for r in await conn.fetch(q("member_pending"), community, addresses)]


async def close_member(
    conn: Conn,
    community: str,
    ident: str,
    actor: str | None,
    reason: str,
    transaction: str | None,
) -> None:
    await conn.execute(q("member_close"), community, ident, actor, reason, transaction)


async def lock_member(conn: Conn, community: str, ident: str) -> asyncpg.Record | None:
    """The member's household and `closed_at`, its row locked (None: no such member)."""
    return await conn.fetchrow(q("member_lock_row"), community, ident)


async def move_member(
    conn: Conn, community: str, ident: str, old: str, new: str, actor: str | None
) -> None:
    await conn.execute(q("member_move"), community, ident, old, new, actor)


async def member_households(conn: Queryable, community: str, ident: str) -> list[asyncpg.Record]:
    return await conn.fetch(q("member_households"), community, ident)


async def member_closed(conn: Queryable, community: str, ident: str) -> bool | None:
    """Whether the member is closed; None when there is no such member."""
    closed: bool | None = await conn.fetchval(q("member_closed"), community, ident)
    return closed


async def closed_accounts(conn: Queryable, community: str, addresses: list[str]) -> set[str]:
    """Which of `addresses` are closed members' accounts."""
    return {r["address"] for r in await conn.fetch(q("accounts_closed"), community, addresses)}


# Lists for the community office's pages.


async def search_members(
    conn: Queryable, community: str, pattern: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(q("member_search"), community, pattern, limit)


async def households(conn: Queryable, community: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(q("household_list"), community, limit)
