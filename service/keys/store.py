"""asyncpg calls for API keys, one function per named query."""

from __future__ import annotations

import asyncpg

from service.db import Conn, Queryable, q


async def insert_key(
    conn: Conn,
    key_id: str,
    secret_hash: bytes,
    role: str,
    community: str | None,
    property_company: str | None,
    store: str | None,
    member: str | None,
    teams: list[str] | None,
    created_by: str,
    district: str | None = None,
) -> None:
    await conn.execute(
        q("key_insert"),
        key_id,
        secret_hash,
        role,
        community,
        property_company,
        store,
        member,
        teams,
        created_by,
        district,
    )


async def get_key(conn: Queryable, key_id: str) -> asyncpg.Record | None:
    """An active (not revoked) key, with its secret's hash and its scope."""
    return await conn.fetchrow(q("key_get"), key_id)


async def key_scope(conn: Conn, key_id: str) -> asyncpg.Record | None:
    """An active key's role and community, to decide who may revoke it."""
    return await conn.fetchrow(q("key_scope"), key_id)


async def revoke_key(conn: Conn, key_id: str) -> None:
    await conn.execute(q("key_revoke"), key_id)


async def revoke_issued_by(conn: Conn, issuer: str) -> None:
    await conn.execute(q("keys_revoke_issued_by"), issuer)
