"""asyncpg calls of the love supermarket, one function per named query.

Here `store` is a shop of the supermarket (`store:<id>:redemptions`), as in the SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from service.db import Conn, q
from service.supermarket.model import Line
from service.supermarket.views import ReturnLineOut


async def upsert_item(
    conn: Conn, community: str, store: str, sku: str, name: str, points: int, stock: int
) -> asyncpg.Record:
    """Creates or replaces a catalogue item; its `created` says which."""
    row = await conn.fetchrow(q("item_upsert"), community, store, sku, name, points, stock)
    assert row is not None
    return row


async def list_items(
    conn: Conn, community: str, store: str, after_sku: str, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(q("item_list"), community, store, after_sku, limit)


async def get_redemption(conn: Conn, community: str, redemption: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("redemption_get"), community, redemption)


async def prepare_redemption(
    conn: Conn, community: str, redemption: str, member: str | None, store: str, skus: list[str]
) -> asyncpg.Record:
    """Checks the member (None: one of another community, checked there), locks the
    items `skus` (sorted) and looks up the id."""
    row = await conn.fetchrow(q("redemption_prepare"), community, redemption, member, store, skus)
    assert row is not None
    return row


async def write_redemption(
    conn: Conn,
    community: str,
    redemption: str,
    request_hash: bytes,
    store: str,
    member: str,
    points: int,
    actor: str | None,
    lines: Sequence[Line],
    code_hash: bytes | None,
    document: str,
) -> asyncpg.Record:
    """The spend code used up (`code_hash`, if one is needed), the redemption, its
    lines, the stock and the ledger's write of `document`."""
    row = await conn.fetchrow(
        q("redemption_write"),
        community,
        redemption,
        request_hash,
        store,
        member,
        points,
        actor,
        [x.sku for x in lines],
        [x.name for x in lines],
        [x.qty for x in lines],
        [x.points_each for x in lines],
        code_hash,
        document,
    )
    assert row is not None
    return row


async def write_network_redemption(
    conn: Conn,
    community: str,
    member_community: str,
    district: str,
    redemption: str,
    request_hash: bytes,
    store: str,
    member: str,
    points: int,
    actor: str | None,
    lines: Sequence[Line],
    code_hash: bytes | None,
    member_document: str,
    store_document: str,
) -> asyncpg.Record:
    """As `write_redemption`, for a member of `member_community`: the code is used up
    there, and both sides' ledger writes are made (sql/functions/network.sql)."""
    row = await conn.fetchrow(
        q("network_redemption_write"),
        community,
        member_community,
        district,
        redemption,
        request_hash,
        store,
        member,
        points,
        actor,
        [x.sku for x in lines],
        [x.name for x in lines],
        [x.qty for x in lines],
        [x.points_each for x in lines],
        code_hash,
        member_document,
        store_document,
    )
    assert row is not None
    return row


async def write_network_return(
    conn: Conn,
    community: str,
    member_community: str,
    district: str,
    redemption: str,
    return_id: str,
    request_hash: bytes,
    store: str,
    back: Sequence[Line],
    items: list[ReturnLineOut],
    points: int,
    actor: str | None,
    member_document: str,
    store_document: str,
) -> asyncpg.Record:
    """As `write_return`, for a redemption by a member of `member_community`."""
    row = await conn.fetchrow(
        q("network_return_write"),
        community,
        member_community,
        district,
        redemption,
        return_id,
        request_hash,
        store,
        [x.sku for x in back],
        [x.qty for x in back],
        items,
        points,
        actor,
        member_document,
        store_document,
    )
    assert row is not None
    return row


async def get_return(
    conn: Conn, community: str, redemption: str, return_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(q("redemption_return_get"), community, redemption, return_id)


async def prepare_return(
    conn: Conn, community: str, redemption: str, return_id: str | None
) -> asyncpg.Record:
    """Locks the redemption and reads its owner, lines and returns (and the return
    `return_id`'s request hash, if it exists)."""
    row = await conn.fetchrow(q("redemption_return_prepare"), community, redemption, return_id)
    assert row is not None
    return row


async def write_return(
    conn: Conn,
    community: str,
    redemption: str,
    return_id: str,
    request_hash: bytes,
    store: str,
    back: Sequence[Line],
    items: list[ReturnLineOut],
    points: int,
    actor: str | None,
    document: str,
) -> asyncpg.Record:
    """Locks the items and puts `back` on the shelf, with the return and the ledger's
    write of `document`."""
    row = await conn.fetchrow(
        q("redemption_return_write"),
        community,
        redemption,
        return_id,
        request_hash,
        store,
        [x.sku for x in back],
        [x.qty for x in back],
        items,
        points,
        actor,
        document,
    )
    assert row is not None
    return row
