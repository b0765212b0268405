"""Setup use cases: communities, households and members (SPEC section 4, "Setup")."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from service.db import q
from service.errors import IdempotencyConflict, NotFound, ValidationFailed
from service.ledger import service as ledger
from service.ledger.model import (
    ASSETS,
    SYSTEM_NAMES,
    NewTransaction,
    Posting,
    RuleParams,
    member_address,
)
from service.ledger.store import Conn


class Community(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    timezone: str
    created_at: datetime


class Household(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    address: str | None
    property_company: str
    created_at: datetime


class Member(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    household: str
    property_company: str
    name: str | None
    created_at: datetime


def _conflict(kind: str, ident: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"{kind} {ident!r} exists with different fields; pick a new id or resend the original"
    )


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValidationFailed(f"unknown time zone {name!r}; use an IANA name") from err
    return name


async def create_community(
    conn: Conn, ident: str, name: str, timezone: str, request_hash: bytes
) -> tuple[Community, bool]:
    async with conn.transaction():
        addresses = [f"system:{n}:{a}" for n in sorted(SYSTEM_NAMES) for a in ASSETS]
        assets = [a for _ in SYSTEM_NAMES for a in ASSETS]
        created = await conn.fetchval(
            q("community_insert"), ident, name, timezone, request_hash, addresses, assets
        )
        row = await conn.fetchrow(q("community_get"), ident)
    assert row is not None
    if not created and bytes(row["request_hash"]) != request_hash:
        raise _conflict("community", ident)
    return _community(row), not created


def _community(row: asyncpg.Record) -> Community:
    return Community(
        id=row["id"], name=row["name"], timezone=row["timezone"], created_at=row["created_at"]
    )


async def get_community(conn: Conn, ident: str) -> Community:
    row = await conn.fetchrow(q("community_get"), ident)
    if row is None:
        raise NotFound(f"no community {ident!r}")
    return _community(row)


async def create_household(
    conn: Conn,
    community: str,
    ident: str,
    address: str | None,
    property_company: str,
    request_hash: bytes,
) -> tuple[Household, bool]:
    await get_community(conn, community)
    inserted = await conn.fetchval(
        q("household_insert"), community, ident, address, property_company, request_hash
    )
    row = await conn.fetchrow(q("household_get"), community, ident)
    assert row is not None
    if inserted is None and bytes(row["request_hash"]) != request_hash:
        raise _conflict("household", ident)
    household = Household(
        id=row["id"],
        address=row["address"],
        property_company=row["property_company"],
        created_at=row["created_at"],
    )
    return household, inserted is None


async def get_member(conn: Conn, community: str, ident: str) -> Member:
    row = await conn.fetchrow(q("member_get"), community, ident)
    if row is None:
        raise NotFound(f"no member {ident!r} in community {community!r}")
    return Member(
        id=row["id"],
        household=row["household_id"],
        property_company=row["property_company"],
        name=row["name"],
        created_at=row["created_at"],
    )


async def create_member(
    conn: Conn,
    community: str,
    ident: str,
    household: str,
    name: str | None,
    request_hash: bytes,
    params: RuleParams,
) -> tuple[Member, bool]:
    """Adds a member, opens both accounts and posts the baseline opening credit, atomically."""
    async with conn.transaction():
        if await conn.fetchval(q("household_get"), community, household) is None:
            raise NotFound(f"no household {household!r} in community {community!r}")
        inserted = await conn.fetchval(
            q("member_insert"), community, ident, household, name, request_hash
        )
        if inserted is not None:
            await conn.execute(q("member_open_accounts"), community, ident)
            await _post_opening(conn, community, ident, params)
    if inserted is None:
        row = await conn.fetchrow(q("member_get"), community, ident)
        assert row is not None
        if bytes(row["request_hash"]) != request_hash:
            raise _conflict("member", ident)
    return await get_member(conn, community, ident), inserted is None


async def _post_opening(conn: Conn, community: str, member: str, params: RuleParams) -> None:
    if params.baseline <= 0:
        return
    opening = NewTransaction(
        client_id=f"{member}:opening",
        postings=(
            Posting(
                source="system:opening:points",
                destination=member_address(member, "points"),
                asset="points",
                amount=params.baseline,
            ),
        ),
        request_hash=b"opening",
        kind="opening",
        reason="opening balance: the baseline score",
    )
    await ledger.create(conn, community, opening, params)
