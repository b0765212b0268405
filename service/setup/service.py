"""Setup use cases: communities, households and members (SPEC section 4, "Setup")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from service.db import Conn, Queryable, unit_of_work
from service.errors import IdempotencyConflict, NotFound, ValidationFailed
from service.i18n import DEFAULT_LANGUAGE, system_reason
from service.ledger import service as ledger
from service.ledger.model import (
    ASSETS,
    SYSTEM_NAMES,
    NewTransaction,
    Posting,
    RuleParams,
    member_address,
)
from service.setup import store


class Community(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    timezone: str
    language: str  # of the reasons the service writes (service/i18n): zh-CN or en
    created_at: datetime
    # The district it belongs to (SPEC section 16), if any.
    district: str | None = None


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
    # "closed" once the member moved out (service/setup/lifecycle.py): then when, and why.
    status: Literal["active", "closed"] = "active"
    closed_at: datetime | None = None
    close_reason: str | None = None


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
    conn: Conn,
    ident: str,
    name: str,
    timezone: str,
    request_hash: bytes,
    language: str = DEFAULT_LANGUAGE,
) -> tuple[Community, bool]:
    addresses = [f"system:{n}:{a}" for n in sorted(SYSTEM_NAMES) for a in ASSETS]
    assets = [a for _ in SYSTEM_NAMES for a in ASSETS]

    async def work() -> tuple[bool, asyncpg.Record | None]:
        created = await store.insert_community(
            conn, ident, name, timezone, language, request_hash, addresses, assets
        )
        return created, await store.community(conn, ident)

    created, row = await unit_of_work(conn, work)
    assert row is not None
    if not created and bytes(row["request_hash"]) != request_hash:
        raise _conflict("community", ident)
    return _community(row), not created


def _community(row: asyncpg.Record) -> Community:
    return Community(
        id=row["id"],
        name=row["name"],
        timezone=row["timezone"],
        language=row["language"],
        created_at=row["created_at"],
        district=row["district_id"],
    )


async def get_community(conn: Queryable, ident: str) -> Community:
    row = await store.community(conn, ident)
    if row is None:
        raise NotFound(f"no community {ident!r}")
    return _community(row)


async def community_ids(conn: Queryable) -> list[str]:
    """Every community's id, in id order (for jobs and the audit of all of them)."""
    return await store.community_ids(conn)


async def create_household(
    conn: Conn,
    community: str,
    ident: str,
    address: str | None,
    property_company: str,
    request_hash: bytes,
) -> tuple[Household, bool]:
    await get_community(conn, community)
    inserted = await store.insert_household(
        conn, community, ident, address, property_company, request_hash
    )
    row = await store.household(conn, community, ident)
    assert row is not None
    if not inserted and bytes(row["request_hash"]) != request_hash:
        raise _conflict("household", ident)
    household = Household(
        id=row["id"],
        address=row["address"],
        property_company=row["property_company"],
        created_at=row["created_at"],
    )
    return household, not inserted


async def get_member(conn: Conn, community: str, ident: str) -> Member:
    row = await store.member(conn, community, ident)
    if row is None:
        raise NotFound(f"no member {ident!r} in community {community!r}")
    return _member(row)


def _member(row: asyncpg.Record) -> Member:
    return Member(
        id=row["id"],
        household=row["household_id"],
        property_company=row["property_company"],
        name=row["name"],
        created_at=row["created_at"],
        status="active" if row["closed_at"] is None else "closed",
        closed_at=row["closed_at"],
        close_reason=row["close_reason"],
    )


async def create_member(
    conn: Conn,
    community: str,
    ident: str,
    household: str,
    name: str | None,
    request_hash: bytes,
    params: RuleParams,
    *,
    language: str,
) -> tuple[Member, bool]:
    """Adds a member, opens both accounts and posts the baseline opening credit, atomically;
    `language` is the community's, for the opening credit's reason."""

    inserted = await unit_of_work(
        conn,
        lambda: add_member(conn, community, ident, household, name, request_hash, params, language),
    )
    row = await store.member(conn, community, ident)
    assert row is not None
    if not inserted and bytes(row["request_hash"]) != request_hash:
        raise _conflict("member", ident)
    return _member(row), not inserted


async def add_member(
    conn: Conn,
    community: str,
    ident: str,
    household: str,
    name: str | None,
    request_hash: bytes,
    params: RuleParams,
    language: str,
) -> bool:
    """`create_member`'s work, inside the caller's transaction; False when the id exists."""
    if await store.household(conn, community, household) is None:
        raise NotFound(f"no household {household!r} in community {community!r}")
    inserted = await store.insert_member(conn, community, ident, household, name, request_hash)
    if inserted:
        await store.open_member_accounts(conn, community, ident)
        await _post_opening(conn, community, ident, params, language)
    return inserted


async def _post_opening(
    conn: Conn, community: str, member: str, params: RuleParams, language: str
) -> None:
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
        reason=system_reason(language, "opening_balance"),
        lot_expires="never",  # the baseline's lot, whatever the rule set's policy
    )
    await ledger.create(conn, community, opening, params)


# Lists for the community office's pages (service/web/pages/operator.py).


class MemberLine(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str | None
    household: str
    address: str | None
    score: int
    status: Literal["active", "closed"]


class HouseholdLine(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    address: str | None
    property_company: str
    # Its members who have not moved out: (id, name or "").
    members: list[tuple[str, str]]


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_members(
    conn: Queryable, community: str, text: str | None, limit: int = 100
) -> list[MemberLine]:
    """Members whose id, name, household or address contains `text` (all: None), by id."""
    pattern = _like(text.strip()) if text and text.strip() else None
    rows = await store.search_members(conn, community, pattern, limit)
    return [
        MemberLine(
            id=r["id"],
            name=r["name"],
            household=r["household_id"],
            address=r["address"],
            score=r["score"],
            status="active" if r["closed_at"] is None else "closed",
        )
        for r in rows
    ]


async def list_households(conn: Queryable, community: str, limit: int = 500) -> list[HouseholdLine]:
    rows = await store.households(conn, community, limit)
    return [
        HouseholdLine(
            id=r["id"],
            address=r["address"],
            property_company=r["property_company"],
            members=list(zip(r["member_ids"], r["member_names"], strict=True)),
        )
        for r in rows
    ]
