"""District network endpoints (SPEC section 16): districts, district-wide stores,
the clearing between communities and settlements."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from msgspec import Meta

from service.api.deps import (
    FromQueryInstant,
    ToQueryInstant,
    body,
    db,
    fingerprint,
    instant,
    principal_of,
    rules_of,
    written,
)
from service.api.exports import ExportFormat, sheet_response
from service.api.openapi import json_body
from service.api.wire import ClientId, CommunityId, Strict
from service.db import Conn
from service.errors import Forbidden, ValidationFailed
from service.exports import service as exports
from service.ledger import audit
from service.ledger.model import COMMUNITY_PATTERN, ID_PATTERN
from service.network import model
from service.network import service as network
from service.network.service import FenOf

ADMIN: Final = frozenset[str]()
DISTRICT: Final = frozenset({"district_operator"})
OPERATOR: Final = frozenset({"operator"})
STORE: Final = frozenset({"operator", "store"})
Req = Request[Any, Any, Any]
_DISTRICT = re.compile(COMMUNITY_PATTERN)
_ID = re.compile(ID_PATTERN)
Name = Annotated[str, Meta(min_length=1, max_length=200)]


class DistrictIn(Strict):
    id: CommunityId
    name: Name
    communities: Annotated[list[CommunityId], Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class StoreIn(Strict):
    name: Name
    district_wide: bool = False


class SettlementIn(Strict):
    id: ClientId
    from_: Annotated[datetime, Meta(tz=True)] = msgspec.field(name="from")
    to: Annotated[datetime, Meta(tz=True)]


def _district_id(d: str) -> str:
    if not _DISTRICT.match(d):
        raise ValidationFailed("a district id must match [a-z0-9-]{1,64}")
    return d


def _fen_of(request: Req) -> FenOf:
    book = rules_of(request)

    async def fen(conn: Conn, community: str) -> int:
        return (await book.active(conn, community)).rule_set.fen_per_point

    return fen


@post("/v1/districts", opt={"roles": ADMIN}, operation_class=json_body(DistrictIn))
async def create_district(request: Req) -> Response[model.DistrictOut]:
    """Creates a district with its communities (each belongs to one district)."""
    data = await body(request, DistrictIn)
    async with db(request) as conn:
        district, replayed = await network.create_district(
            conn, data.id, data.name, data.communities, fingerprint(data)
        )
    return written(district, replayed)


@get("/v1/districts/{d:str}", opt={"roles": DISTRICT})
async def get_district(request: Req, d: FromPath[str]) -> model.DistrictOut:
    async with db(request) as conn:
        return await network.get_district(conn, _district_id(d))


@put("/v1/districts/{d:str}/communities/{c:str}", opt={"roles": ADMIN})
async def add_community(request: Req, d: FromPath[str], c: FromPath[str]) -> model.DistrictOut:
    """Adds a community to the district; again, nothing changes."""
    async with db(request) as conn:
        return await network.add_community(conn, _district_id(d), c)


@put(
    "/v1/communities/{c:str}/stores/{s:str}",
    opt={"roles": OPERATOR},
    operation_class=json_body(StoreIn),
)
async def put_store(request: Req, c: FromPath[str], s: FromPath[str]) -> Response[model.StoreOut]:
    """Names a store (201 new, 200 changed); `district_wide`: its tills serve members of
    every community of the district."""
    if not _ID.match(s):
        raise ValidationFailed("a store id must match [A-Za-z0-9._-]{1,64}")
    data = await body(request, StoreIn)
    async with db(request) as conn:
        store, created = await network.put_store(conn, c, s, data.name, data.district_wide)
    return Response(store, status_code=201 if created else 200)


@get("/v1/communities/{c:str}/stores/{s:str}", opt={"roles": STORE})
async def get_store(request: Req, c: FromPath[str], s: FromPath[str]) -> model.StoreOut:
    principal = principal_of(request)
    if principal.role == "store" and principal.store != s:
        raise Forbidden(f"this key acts only for store {principal.store!r}")
    async with db(request) as conn:
        return await network.get_store(conn, c, s)


@get("/v1/districts/{d:str}/clearing", opt={"roles": DISTRICT})
async def clearing(
    request: Req, d: FromPath[str], start: FromQueryInstant = None, end: ToQueryInstant = None
) -> model.ClearingOut:
    """For every ordered pair of the district's communities: the points and minutes
    that moved in [from, to) and the net position (positive: `from` owes `to`), in
    points and in fen at each community's fen_per_point."""
    since, until = instant(start, "from"), instant(end, "to")
    async with db(request) as conn:
        return await network.clearing(conn, _district_id(d), since, until, _fen_of(request))


@get("/v1/communities/{c:str}/interchange", opt={"roles": OPERATOR})
async def community_positions(
    request: Req, c: FromPath[str], start: FromQueryInstant = None, end: ToQueryInstant = None
) -> model.ClearingOut:
    """This community's side of the clearing: its positions towards each community of
    its district, from its own books only."""
    since, until = instant(start, "from"), instant(end, "to")
    async with db(request) as conn:
        return await network.own_positions(conn, c, since, until, _fen_of(request))


@post(
    "/v1/districts/{d:str}/settlements",
    opt={"roles": DISTRICT},
    operation_class=json_body(SettlementIn),
)
async def create_settlement(request: Req, d: FromPath[str]) -> Response[model.SettlementOut]:
    """Closes [from, to) once per id: every change not yet settled made before `to`."""
    data = await body(request, SettlementIn)
    async with db(request) as conn:
        made, replayed = await network.settle(
            conn,
            _district_id(d),
            data.id,
            data.from_,
            data.to,
            fingerprint(data),
            principal_of(request).key_id,
            _fen_of(request),
        )
    return written(made, replayed)


@get("/v1/districts/{d:str}/settlements", opt={"roles": DISTRICT})
async def list_settlements(
    request: Req,
    d: FromPath[str],
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> model.SettlementPage:
    async with db(request) as conn:
        return await network.list_settlements(conn, _district_id(d), limit)


@get("/v1/districts/{d:str}/settlements/{s:str}", opt={"roles": DISTRICT})
async def get_settlement(request: Req, d: FromPath[str], s: FromPath[str]) -> model.SettlementOut:
    async with db(request) as conn:
        return await network.get_settlement(conn, _district_id(d), s)


@get("/v1/districts/{d:str}/settlements/{s:str}/export", opt={"roles": DISTRICT})
async def export_settlement(
    request: Req, d: FromPath[str], s: FromPath[str], fmt: ExportFormat = "csv"
) -> Response[bytes] | Stream:
    """The settlement as a sheet (CSV or XLSX), one row per ordered pair of communities."""
    async with db(request) as conn:
        settlement = await network.get_settlement(conn, _district_id(d), s)
        found = await network.get_district(conn, settlement.district)
        timezone = (
            await rules_of(request).timezone(conn, found.communities[0])
            if found.communities
            else "UTC"
        )
    return sheet_response(await exports.settlement_sheet(settlement, timezone, fmt))


@get("/v1/districts/{d:str}/audit/verify", opt={"roles": DISTRICT})
async def verify_district(request: Req, d: FromPath[str]) -> audit.AuditReport:
    """The network's invariants over the district, in one snapshot: every pair of
    interchange accounts mirrors the other, and no change exists on one side only."""
    async with db(request) as conn:
        found = await network.get_district(conn, _district_id(d))
        return await audit.verify_district(conn, found.communities)


HANDLERS: Final = [
    create_district,
    get_district,
    add_community,
    put_store,
    get_store,
    clearing,
    community_positions,
    create_settlement,
    list_settlements,
    get_settlement,
    export_settlement,
    verify_district,
]
