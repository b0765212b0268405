"""asyncpg calls of the exports, one function per named query (sql/queries/exports.sql)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from service.db import Conn, q
from service.exports.redemptions import Movement

PAGE_ROWS = 1_000


async def snapshot_now(conn: Conn) -> datetime:
    """The clock of the transaction `conn` is in (its start)."""
    now: datetime = await conn.fetchval(q("export_now"))
    return now


async def movements(
    conn: Conn, community: str, store: str | None, start: datetime, end: datetime
) -> AsyncIterator[list[Movement]]:
    """The redemptions and returns of [start, end), oldest first, PAGE_ROWS at a time
    through a server-side cursor (so inside a transaction)."""
    cursor = await conn.cursor(q("export_redemptions"), community, store, start, end)
    while rows := await cursor.fetch(PAGE_ROWS):
        yield [msgspec.convert(dict(r), Movement) for r in rows]
