"""Consent endpoints (SPEC section 10): residents (and their proxies with `spend`)
issue spend codes and grant mandates; residents and the service desk set PINs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import body, db, principal_of, rules_of
from service.api.openapi import json_body
from service.api.setup import may_read
from service.api.wire import Amount, ClientId, Strict
from service.consent import service as consent
from service.errors import ValidationFailed
from service.ledger.model import ID_PATTERN
from service.offsets.service import offset_year
from service.people.service import acting_for, only_itself

Req = Request[Any, Any, Any]
RESIDENT: Final = frozenset({"resident"})
DESK: Final = frozenset({"operator", "resident"})
READERS: Final = frozenset({"operator", "property", "resident"})
MemberPath = "/v1/communities/{c:str}/members/{m:str}"
_ID = re.compile(ID_PATTERN)


class SpendCodeIn(Strict):
    max_points: Amount
    ttl_s: Annotated[int, Meta(ge=1, le=consent.SPEND_CODE_TTL_MAX_S)] = consent.SPEND_CODE_TTL_S
    # Only this store's till may use it; omitted: any of the community's stores.
    store: ClientId | None = None


class PinIn(Strict):
    pin: Annotated[str, Meta(pattern="^[0-9]{6}$")]


class MandateIn(Strict):
    max_points_per_bill: Amount
    max_points_per_year: Amount | None = None


def _company(company: str) -> str:
    if not _ID.match(company):
        raise ValidationFailed("a property company id must match [A-Za-z0-9._-]{1,64}")
    return company


@post(
    MemberPath + "/spend-codes",
    opt={"roles": RESIDENT},
    operation_class=json_body(SpendCodeIn),
)
async def issue_spend_code(
    request: Req, c: FromPath[str], m: FromPath[str]
) -> Response[consent.SpendCodeOut]:
    """A single-use code for a till, shown once (as a QR code): at most
    `max_points`, for `ttl_s` seconds (at most 600)."""
    data = await body(request, SpendCodeIn)
    principal = principal_of(request)
    async with db(request) as conn:
        behalf = await acting_for(conn, principal, c, m, "spend")
        code = await consent.issue_spend_code(
            conn, c, m, data.max_points, data.ttl_s, data.store, principal.key_id, behalf
        )
    return Response(code, status_code=201, headers={"Cache-Control": "no-store"})


@put(MemberPath + "/pin", opt={"roles": DESK}, operation_class=json_body(PinIn))
async def set_pin(request: Req, c: FromPath[str], m: FromPath[str]) -> consent.PinOut:
    """Sets the member's six-digit PIN (stored with scrypt): the resident itself, or
    an operator at the service desk. Earlier wrong tries are forgotten."""
    data = await body(request, PinIn)
    principal = principal_of(request)
    async with db(request) as conn:
        await only_itself(conn, principal, c, m, "set its PIN")
        return await consent.set_pin(conn, c, m, data.pin, principal.key_id)


@put(
    MemberPath + "/mandates/{company:str}",
    opt={"roles": DESK},
    operation_class=json_body(MandateIn),
)
async def put_mandate(
    request: Req, c: FromPath[str], m: FromPath[str], company: FromPath[str]
) -> consent.MandateOut:
    """Grants (or replaces) the member's standing consent to `company`'s offsets
    within ceilings per bill and per year: the resident, its proxy with `spend`,
    or an operator recording the resident's written consent."""
    data = await body(request, MandateIn)
    principal = principal_of(request)
    async with db(request) as conn:
        behalf = await acting_for(conn, principal, c, m, "spend")
        return await consent.put_mandate(
            conn,
            c,
            m,
            _company(company),
            data.max_points_per_bill,
            data.max_points_per_year,
            await offset_year(rules_of(request), conn, c),
            principal.key_id,
            behalf,
        )


@get(MemberPath + "/mandates", opt={"roles": READERS})
async def list_mandates(request: Req, c: FromPath[str], m: FromPath[str]) -> consent.MandateList:
    """The member's mandates in force, with what each has used this year; a
    property key sees only its own company's."""
    principal = principal_of(request)
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        company = principal.property_company if principal.role == "property" else None
        year = await offset_year(rules_of(request), conn, c)
        found = await consent.list_mandates(conn, c, m, year, company=company)
    return consent.MandateList(mandates=found)


@delete(MemberPath + "/mandates/{company:str}", opt={"roles": DESK}, status_code=200)
async def revoke_mandate(
    request: Req, c: FromPath[str], m: FromPath[str], company: FromPath[str]
) -> consent.MandateOut:
    """Revokes the mandate: the company's next quotes and offsets of the member
    need a new one (holds made under it stay, to be applied or cancelled)."""
    principal = principal_of(request)
    async with db(request) as conn:
        behalf = await acting_for(conn, principal, c, m, "spend")
        year = await offset_year(rules_of(request), conn, c)
        return await consent.revoke_mandate(
            conn, c, m, _company(company), year, principal.key_id, behalf
        )


HANDLERS: Final = [issue_spend_code, set_pin, put_mandate, list_mandates, revoke_mandate]
