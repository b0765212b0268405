"""Property-fee offsets (property companies' billing systems, operators)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from service import setup
from service.api.deps import (
    FromQueryInstant,
    ToQueryInstant,
    body,
    changed,
    db,
    fingerprint,
    instant,
    principal_of,
    rules_of,
    written,
)
from service.api.exports import ExportFormat, sheet_response, span
from service.api.openapi import json_body
from service.api.wire import Amount, ClientId, Strict, TtlSeconds
from service.db import Conn
from service.errors import Forbidden, InsufficientPoints, NotFound, ValidationFailed
from service.exports import service as exports
from service.offsets import service as offsets
from service.offsets.model import NewOffset
from service.offsets.views import OffsetOut, OffsetPage, QuoteOut

PROPERTY: Final = frozenset({"operator", "property"})
Req = Request[Any, Any, Any]
OffsetPath = "/v1/communities/{c:str}/offsets/{o:str}"
_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class QuoteIn(Strict):
    member: ClientId
    household: ClientId
    bill_amount_fen: Amount


class OffsetIn(Strict):
    id: ClientId
    member: ClientId
    household: ClientId
    bill_amount_fen: Amount
    points: Amount
    hold: bool = False
    hold_ttl_s: TtlSeconds | None = None


def _company_scope(request: Req) -> str | None:
    """The property company a key is limited to; None for operators and admins."""
    principal = principal_of(request)
    return principal.property_company if principal.role == "property" else None


def _settled_company(request: Req, asked: str | None) -> str | None:
    """The company whose offsets a list or a settlement sheet selects (None: all): a
    property key's own, and asking for another's is 403, as the key is known."""
    scope = _company_scope(request)
    if scope is not None and asked not in (None, scope):
        raise Forbidden(f"this key settles only for property company {scope!r}")
    return scope or asked


async def _member_of(request: Req, conn: Conn, c: str, member: str, household: str) -> setup.Member:
    """The member, once it is known to live in the household and the key may act for
    its company. Another company's members are 404: existence does not leak."""
    found = await setup.get_member(conn, c, member)
    scope = _company_scope(request)
    if scope is not None and found.property_company != scope:
        raise NotFound(f"no member {member!r} in community {c!r}")
    if found.household != household:
        raise ValidationFailed(f"member {member!r} does not live in household {household!r}")
    return found


@post(
    "/v1/communities/{c:str}/offsets/quote",
    opt={"roles": PROPERTY},
    status_code=200,
    operation_class=json_body(QuoteIn),
)
async def quote_offset(request: Req, c: FromPath[str]) -> QuoteOut:
    """How many points one offset of this bill could take now, every cap applied."""
    data = await body(request, QuoteIn)
    async with db(request) as conn:
        # A member who moved out has nothing to offset: member_closed, not a quote of 0.
        found = setup.check_open(await _member_of(request, conn, c, data.member, data.household))
        return await offsets.quote(
            conn,
            rules_of(request),
            c,
            data.member,
            data.household,
            data.bill_amount_fen,
            found.property_company,
            principal_of(request).role,
        )


@post(
    "/v1/communities/{c:str}/offsets", opt={"roles": PROPERTY}, operation_class=json_body(OffsetIn)
)
async def create_offset(request: Req, c: FromPath[str]) -> Response[OffsetOut]:
    """Holds (`hold: true`, until applied, cancelled or `hold_ttl_s`) or applies an offset."""
    data = await body(request, OffsetIn)
    if data.hold_ttl_s is not None and not data.hold:
        raise ValidationFailed("hold_ttl_s is only for a hold (hold: true)")
    async with db(request) as conn:
        found = await _member_of(request, conn, c, data.member, data.household)
        company = found.property_company
        new = NewOffset(
            id=data.id,
            member=data.member,
            household=data.household,
            property_company=company,
            bill_amount_fen=data.bill_amount_fen,
            points=data.points,
            hold=data.hold,
            hold_ttl_s=data.hold_ttl_s,
            request_hash=fingerprint(data),
            actor=principal_of(request).key_id,
            role=principal_of(request).role,
        )
        try:
            offset, replayed = await offsets.create_offset(conn, rules_of(request), c, new)
        except InsufficientPoints as err:  # a closed member's: member_closed
            raise await setup.explained(conn, c, err) from None
    return written(offset, replayed)


@post(OffsetPath + "/apply", opt={"roles": PROPERTY})
async def apply_offset(request: Req, c: FromPath[str], o: FromPath[str]) -> Response[OffsetOut]:
    """Posts a held offset (the bill was paid)."""
    async with db(request) as conn:
        offset, replayed = await offsets.apply_offset(conn, c, o, _company_scope(request))
    return changed(offset, replayed)


@post(OffsetPath + "/cancel", opt={"roles": PROPERTY})
async def cancel_offset(request: Req, c: FromPath[str], o: FromPath[str]) -> Response[OffsetOut]:
    """Voids a hold, or reverses an applied offset: the points go back to the member."""
    async with db(request) as conn:
        params = await rules_of(request).params(conn, c)
        offset, replayed = await offsets.cancel_offset(
            conn, c, o, _company_scope(request), params, principal_of(request).key_id
        )
    return changed(offset, replayed)


@get(OffsetPath, opt={"roles": PROPERTY})
async def get_offset(request: Req, c: FromPath[str], o: FromPath[str]) -> OffsetOut:
    async with db(request) as conn:
        return await offsets.get_offset(conn, c, o, _company_scope(request))


@get("/v1/communities/{c:str}/offsets", opt={"roles": PROPERTY})
async def list_offsets(
    request: Req,
    c: FromPath[str],
    property_company: Annotated[
        str | None, QueryParameter(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    ] = None,
    start: FromQueryInstant = None,
    end: ToQueryInstant = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> OffsetPage:
    """Offsets created in [from, to), newest first, with totals for settlement."""
    since, until = instant(start, "from"), instant(end, "to")
    company = _settled_company(request, property_company)
    async with db(request) as conn:
        return await offsets.list_offsets(
            conn, c, company, since or _FAR_PAST, until or _FAR_FUTURE, cursor, limit
        )


@get("/v1/communities/{c:str}/offsets/export", opt={"roles": PROPERTY})
async def export_offsets(
    request: Req,
    c: FromPath[str],
    start: FromQueryInstant = None,
    end: ToQueryInstant = None,
    property_company: Annotated[
        str | None, QueryParameter(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    ] = None,
    fmt: ExportFormat = "csv",
) -> Response[bytes] | Stream:
    """The settlement sheet (结算单): the offsets `GET …/offsets` lists for the same
    selection (created in [from, to), at most 366 days), then its totals."""
    company = _settled_company(request, property_company)
    selected = span(start, end)
    async with db(request) as conn:
        export = await exports.offsets_sheet(conn, rules_of(request), c, company, selected, fmt)
    return sheet_response(export)


HANDLERS: Final = [
    quote_offset,
    create_offset,
    apply_offset,
    cancel_offset,
    get_offset,
    list_offsets,
    export_offsets,
]
