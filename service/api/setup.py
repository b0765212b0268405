"""Setup and resident endpoints: communities, households, members, balances, statements."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service import i18n, setup
from service.api.deps import (
    OPERATOR,
    READ_MEMBER,
    FromQueryInstant,
    InstantQuery,
    ToQueryInstant,
    body,
    db,
    fingerprint,
    instant,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.wire import CommunityIn, HouseholdIn, MemberIn
from service.db import Conn
from service.errors import NotFound
from service.ledger import lots, reads
from service.ledger.model import member_address
from service.people import service as people

ANY_ROLE: Final = frozenset({"operator", "property", "volunteer_app", "store", "resident"})
ADMIN_ONLY: Final = frozenset[str]()
Req = Request[Any, Any, Any]


@post("/v1/communities", opt={"roles": ADMIN_ONLY}, operation_class=json_body(CommunityIn))
async def create_community(request: Req) -> Response[setup.Community]:
    data = await body(request, CommunityIn)
    setup.check_timezone(data.timezone)
    async with db(request) as conn:
        community, replayed = await setup.create_community(
            conn, data.id, data.name, data.timezone, _community_hash(data), data.language
        )
    return written(community, replayed)


def _community_hash(data: CommunityIn) -> bytes:
    """The request's fingerprint, the default language left out: a creation from before
    communities had a language is replayed by the same body, and leaving `language` out
    or giving the default is the same request."""
    fields = msgspec.structs.asdict(data)
    if data.language == i18n.DEFAULT_LANGUAGE:
        del fields["language"]
    return fingerprint(fields)


@get("/v1/communities/{c:str}", opt={"roles": ANY_ROLE})
async def get_community(request: Req, c: FromPath[str]) -> setup.Community:
    async with db(request) as conn:
        return await setup.get_community(conn, c)


@post(
    "/v1/communities/{c:str}/households",
    opt={"roles": OPERATOR},
    operation_class=json_body(HouseholdIn),
)
async def create_household(request: Req, c: FromPath[str]) -> Response[setup.Household]:
    data = await body(request, HouseholdIn)
    async with db(request) as conn:
        household, replayed = await setup.create_household(
            conn, c, data.id, data.address, data.property_company, fingerprint(data)
        )
    return written(household, replayed)


@post(
    "/v1/communities/{c:str}/members", opt={"roles": OPERATOR}, operation_class=json_body(MemberIn)
)
async def create_member(request: Req, c: FromPath[str]) -> Response[setup.Member]:
    data = await body(request, MemberIn)
    book = rules_of(request)
    request_hash = fingerprint(data)
    async with db(request) as conn:
        params, language = await book.params(conn, c), await book.language(conn, c)
        member, replayed = await setup.create_member(
            conn, c, data.id, data.household, data.name, request_hash, params, language=language
        )
    return written(member, replayed)


async def _readable_member(request: Req, conn: Conn, c: str, m: str) -> setup.Member:
    """The member, if this key may read it: residents themselves and the members
    they are a proxy of with `read` (people.acting_for), property companies the
    members of households they serve. Others' members are 404, not 403, so a key
    cannot probe which members exist."""
    principal = principal_of(request)
    await people.acting_for(conn, principal, c, m, "read")
    member = await setup.get_member(conn, c, m)
    if principal.role == "property" and principal.property_company != member.property_company:
        raise NotFound(f"no member {m!r} in community {c!r}")
    return member


async def may_read(request: Req, conn: Conn, c: str, m: str) -> None:
    """`_readable_member`'s refusals, with a round trip only where the member's
    household decides (property keys) or a resident reads for another member (its
    proxy grant): reads of an unknown member answer 404 from their own query."""
    principal = principal_of(request)
    if principal.role == "property":
        await _readable_member(request, conn, c, m)
    else:
        await people.acting_for(conn, principal, c, m, "read")


@get("/v1/communities/{c:str}/members/{m:str}", opt={"roles": READ_MEMBER})
async def get_member(request: Req, c: FromPath[str], m: FromPath[str]) -> setup.Member:
    async with db(request) as conn:
        return await _readable_member(request, conn, c, m)


@get("/v1/communities/{c:str}/members/{m:str}/balance", opt={"roles": READ_MEMBER})
async def member_balance(
    request: Req, c: FromPath[str], m: FromPath[str], as_of: InstantQuery = None
) -> lots.MemberBalance:
    """Now, with what expires next; or the posted balances at `as_of` (in the past)."""
    at = instant(as_of, "as_of")
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        if at is not None:
            params = (await rules_of(request).active(conn, c, at)).rule_set.to_params()
            return await lots.member_balance_as_of(conn, c, m, at, params)
        return await lots.member_balance(conn, c, m, await rules_of(request).params(conn, c))


@get(
    "/v1/communities/{c:str}/members/{m:str}/statement",
    opt={"roles": frozenset({"operator", "resident"})},
)
async def member_statement(
    request: Req,
    c: FromPath[str],
    m: FromPath[str],
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    asset: FromQuery[Literal["points", "minutes"]] = "points",
    start: FromQueryInstant = None,
    end: ToQueryInstant = None,
) -> reads.EntryPage:
    """The member's entries, newest first, each saying why it exists."""
    since, until = instant(start, "from"), instant(end, "to")
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        return await reads.entries_page(
            conn, c, member_address(m, asset), cursor=cursor, limit=limit, start=since, end=until
        )
