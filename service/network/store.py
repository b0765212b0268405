"""asyncpg calls of the district network, one function per named query
(sql/queries/network.sql)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from service.db import Conn, Queryable, q


async def insert_district(conn: Conn, ident: str, name: str, request_hash: bytes) -> bool:
    return await conn.fetchval(q("district_insert"), ident, name, request_hash) is not None


async def get_district(conn: Queryable, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("district_get"), ident)


async def lock_district(conn: Conn, ident: str) -> bool:
    return await conn.fetchval(q("district_lock"), ident) is not None


async def join_district(conn: Conn, district: str, community: str) -> asyncpg.Record:
    row = await conn.fetchrow(q("district_join"), district, community)
    assert row is not None
    return row


async def upsert_store(
    conn: Conn, community: str, store: str, name: str, district_wide: bool
) -> asyncpg.Record:
    row = await conn.fetchrow(q("store_upsert"), community, store, name, district_wide)
    assert row is not None
    return row


async def get_store(conn: Queryable, community: str, store: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("store_get"), community, store)


async def interchange_sums(
    conn: Queryable, district: str, communities: list[str], start: datetime, end: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(q("interchange_sums"), district, communities, start, end)


async def get_settlement(conn: Queryable, district: str, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("settlement_get"), district, ident)


async def list_settlements(conn: Queryable, district: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(q("settlement_list"), district, limit)


async def overlapping_settlement(
    conn: Conn, district: str, start: datetime, end: datetime
) -> str | None:
    found: str | None = await conn.fetchval(q("settlement_overlap"), district, start, end)
    return found


async def claim_moves(
    conn: Conn,
    district: str,
    communities: list[str],
    settlement: str,
    start: datetime,
    end: datetime,
) -> list[asyncpg.Record]:
    return await conn.fetch(q("settlement_claim"), district, communities, settlement, end, start)


async def insert_settlement(
    conn: Conn,
    district: str,
    ident: str,
    start: datetime,
    end: datetime,
    request_hash: bytes,
    moves: int,
    late: int,
    positions: list[object],
    created_by: str | None,
) -> datetime:
    created: datetime = await conn.fetchval(
        q("settlement_insert"),
        district,
        ident,
        start,
        end,
        request_hash,
        moves,
        late,
        positions,
        created_by,
    )
    return created


async def tx_row_of(conn: Queryable, community: str, client_id: str) -> int | None:
    found: int | None = await conn.fetchval(q("interchange_tx_of"), community, client_id)
    return found


async def interchange_write(
    conn: Conn,
    district: str,
    change: str,
    kind: str,
    first: str,
    first_document: str,
    second: str,
    second_document: str,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        q("interchange_write"),
        district,
        change,
        kind,
        first,
        first_document,
        second,
        second_document,
    )


async def member_free_lots(conn: Conn, community: str, address: str) -> list[asyncpg.Record]:
    return await conn.fetch(q("member_free_lots"), community, address)


async def member_move(conn: Queryable, community: str, ident: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("member_move_get"), community, ident)


async def insert_member_move(
    conn: Conn,
    community: str,
    ident: str,
    request_hash: bytes,
    member: str,
    to_community: str,
    to_member: str,
    district: str,
    carried: object,
    created_by: str | None,
) -> bool:
    """True when the move was recorded; False when its id was taken meanwhile."""
    inserted = await conn.fetchval(
        q("member_move_insert"),
        community,
        ident,
        request_hash,
        member,
        to_community,
        to_member,
        district,
        carried,
        created_by,
    )
    return inserted is not None
