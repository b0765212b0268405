"""asyncpg calls of consent, one function per named query (sql/queries/consent.sql)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from service.db import Queryable, q


async def insert_spend_code(
    conn: Queryable,
    community: str,
    code_hash: bytes,
    member: str,
    max_points: int,
    store: str | None,
    ttl_s: int,
    issued_by: str,
    on_behalf_of: str | None,
) -> datetime:
    """The code's expiry. An unknown member raises ForeignKeyViolationError."""
    expires_at: datetime = await conn.fetchval(
        q("spend_code_insert"),
        community,
        code_hash,
        member,
        max_points,
        store,
        float(ttl_s),
        issued_by,
        on_behalf_of,
    )
    return expires_at


async def spend_code_holder(
    conn: Queryable, community: str, code_hash: bytes, store: str
) -> asyncpg.Record | None:
    """The member, ceiling, store and expiry of a code `store` could use now."""
    return await conn.fetchrow(q("spend_code_holder"), community, code_hash, store)


async def spend_code_holder_elsewhere(
    conn: Queryable, communities: list[str], code_hash: bytes
) -> asyncpg.Record | None:
    """The community, member, ceiling and expiry of a code of one of `communities`
    that a district-wide store of another community could use now."""
    return await conn.fetchrow(q("spend_code_holder_elsewhere"), code_hash, communities)


async def set_pin(
    conn: Queryable, community: str, member: str, pin_hash: str, actor: str
) -> datetime:
    set_at: datetime = await conn.fetchval(q("pin_set"), community, member, pin_hash, actor)
    return set_at


async def pin_attempt(
    conn: Queryable, community: str, member: str, tries: int, lock_s: int
) -> asyncpg.Record | None:
    """Reserves one try: the stored hash (null: no PIN), or None while locked."""
    return await conn.fetchrow(q("pin_attempt"), community, member, tries, float(lock_s))


async def pin_passed(conn: Queryable, community: str, member: str) -> None:
    await conn.execute(q("pin_passed"), community, member)


async def put_mandate(
    conn: Queryable,
    community: str,
    member: str,
    company: str,
    mandate_id: str,
    per_bill: int,
    per_year: int | None,
    actor: str,
    on_behalf_of: str | None,
) -> asyncpg.Record:
    """The mandate in force now. An unknown member raises ForeignKeyViolationError."""
    row = await conn.fetchrow(
        q("mandate_put"),
        community,
        member,
        company,
        mandate_id,
        per_bill,
        per_year,
        actor,
        on_behalf_of,
    )
    assert row is not None
    return row


async def revoke_mandate(
    conn: Queryable,
    community: str,
    member: str,
    company: str,
    actor: str,
    on_behalf_of: str | None,
) -> asyncpg.Record | None:
    """The mandate revoked; None when none was in force."""
    return await conn.fetchrow(q("mandate_revoke"), community, member, company, actor, on_behalf_of)


async def list_mandates(
    conn: Queryable, community: str, member: str, company: str | None, year: str
) -> list[asyncpg.Record]:
    return await conn.fetch(q("mandate_list"), community, member, company, year)


async def mandate_used(
    conn: Queryable, community: str, member: str, company: str, year: str
) -> int:
    used: int = await conn.fetchval(q("mandate_used"), community, member, company, year)
    return used
