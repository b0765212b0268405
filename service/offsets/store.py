"""asyncpg calls of the offsets, one function per named query."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from service.db import Conn, q
from service.offsets.model import NewOffset


async def create_offset(
    conn: Conn,
    community: str,
    new: NewOffset,
    *,
    fen_per_point: int,
    year: str,
    rule_version: int,
    household_cap_fen: int | None,
    mandate: bool,
    document: str,
) -> asyncpg.Record:
    """offset_create: the offset, the household's lock and yearly cap, the
    member's mandate for the company (when `mandate`) and its ceilings, and the
    ledger write of `document`, in one statement that leaves nothing if refused."""
    row = await conn.fetchrow(
        q("offset_create"),
        community,
        new.id,
        new.request_hash,
        new.member,
        new.household,
        new.property_company,
        new.bill_amount_fen,
        new.points,
        fen_per_point,
        new.points * fen_per_point,
        year,
        new.hold,
        rule_version,
        new.actor,
        household_cap_fen,
        mandate,
        document,
    )
    assert row is not None
    return row


async def household_used_fen(conn: Conn, community: str, household: str, year: str) -> int:
    """What the household's offsets of `year` take of its yearly cap now."""
    used: int = await conn.fetchval(q("offset_household_used"), community, household, year)
    return used


async def get_offset(conn: Conn, community: str, offset_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("offset_get"), community, offset_id)


async def list_offsets(
    conn: Conn,
    community: str,
    company: str | None,
    start: datetime,
    end: datetime,
    before_seq: int,
    limit: int,
) -> list[asyncpg.Record]:
    """Offsets created in [start, end) before `before_seq`, newest first."""
    return await conn.fetch(q("offset_list"), community, company, start, end, before_seq, limit)


async def offset_totals(
    conn: Conn, community: str, company: str | None, start: datetime, end: datetime
) -> asyncpg.Record:
    """Settlement totals of the offsets created in [start, end): applied and held."""
    totals = await conn.fetchrow(q("offset_totals"), community, company, start, end)
    assert totals is not None
    return totals
