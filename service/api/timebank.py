"""Time bank endpoints (volunteer apps, residents, operators): volunteer hours and
their approval, time transfers, and conversions of minutes to points."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import (
    body,
    changed,
    db,
    explaining,
    fingerprint,
    pool_of,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.wire import Amount, ClientId, Strict, Text
from service.errors import DomainError, Forbidden
from service.ledger import service as ledger
from service.ledger.batch import submit_one
from service.ledger.views import TransactionOut, transaction_out
from service.timebank import hours
from service.timebank import service as timebank

Req = Request[Any, Any, Any]
TRANSFERS: Final = frozenset({"operator", "volunteer_app", "resident"})
VOLUNTEERING: Final = frozenset({"operator", "volunteer_app"})
HoursPath = "/v1/communities/{c:str}/volunteer-hours/{h:str}"


class HoursIn(Strict):
    id: ClientId
    member: ClientId
    activity: Annotated[str, Meta(min_length=1, max_length=200)]
    started_at: Annotated[datetime, Meta(tz=True)]
    minutes: Annotated[int, Meta(ge=1, le=24 * 60)]
    organiser: ClientId | None = None


class TimeTransferIn(Strict):
    id: ClientId
    from_member: ClientId
    to_member: ClientId
    minutes: Amount
    memo: Text | None = None


class ConversionIn(Strict):
    id: ClientId
    member: ClientId
    minutes: Amount


@post(
    "/v1/communities/{c:str}/time-transfers",
    opt={"roles": TRANSFERS},
    operation_class=json_body(TimeTransferIn),
)
async def create_time_transfer(request: Req, c: FromPath[str]) -> Response[TransactionOut]:
    """Moves minutes between two members; a resident key gives only its own."""
    data = await body(request, TimeTransferIn)
    principal = principal_of(request)
    if principal.role == "resident" and principal.member != data.from_member:
        raise Forbidden("a resident key may only give its own member's minutes")
    new = timebank.time_transfer(
        data.id,
        data.from_member,
        data.to_member,
        data.minutes,
        data.memo,
        fingerprint(data),
        principal.key_id,
    )
    pool = pool_of(request)
    params = await rules_of(request).params(pool, c)
    write = submit_one(request.app.state.coalescer, pool, c, new, params)
    tx, replayed = await explaining(pool, c, write)
    return written(transaction_out(tx), replayed)


@post(
    "/v1/communities/{c:str}/conversions",
    opt={"roles": frozenset({"operator"})},
    operation_class=json_body(ConversionIn),
)
async def create_conversion(request: Req, c: FromPath[str]) -> Response[TransactionOut]:
    """Converts a member's minutes to points at the rate of the rule set in force."""
    data = await body(request, ConversionIn)
    pool = pool_of(request)
    book = rules_of(request)
    active, language = await book.active(pool, c), await book.language(pool, c)
    request_hash = fingerprint(data)
    try:
        new = timebank.conversion(
            data.id,
            data.member,
            data.minutes,
            active.rule_set.time_bank.points_per_hour,
            active.version,
            request_hash,
            principal_of(request).key_id,
            language=language,
        )
    except DomainError:
        # The rate changed since: a repeat of a conversion already made still
        # answers with the original, at the rate it was made at.
        async with db(request) as conn:
            original = await ledger.replay_of(conn, c, data.id, request_hash)
        if original is None:
            raise
        return written(transaction_out(original), replayed=True)
    params = active.rule_set.to_params()
    write = submit_one(request.app.state.coalescer, pool, c, new, params)
    tx, replayed = await explaining(pool, c, write)
    return written(transaction_out(tx), replayed)


@post(
    "/v1/communities/{c:str}/volunteer-hours",
    opt={"roles": VOLUNTEERING},
    operation_class=json_body(HoursIn),
)
async def log_hours(request: Req, c: FromPath[str]) -> Response[hours.Hours]:
    """Logs hours: a pending credit of minutes until approved, unless the rule set
    needs no approval."""
    data = await body(request, HoursIn)
    log = hours.LogHours(
        id=data.id,
        member=data.member,
        activity=data.activity,
        started_at=data.started_at,
        minutes=data.minutes,
        organiser=data.organiser,
    )
    async with db(request) as conn:
        result, replayed = await hours.log_hours(
            conn, rules_of(request), c, log, fingerprint(data), principal_of(request).key_id
        )
    return written(result, replayed)


async def _decide(request: Req, c: str, h: str, status: hours.Decision) -> Response[hours.Hours]:
    async with db(request) as conn:
        result, replayed = await hours.decide(
            conn, rules_of(request), c, h, status, principal_of(request).key_id
        )
    return changed(result, replayed)


@post(f"{HoursPath}/approve", opt={"roles": VOLUNTEERING}, status_code=200)
async def approve_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> Response[hours.Hours]:
    """Posts the minutes and runs the rules on `volunteer.approved`, together."""
    return await _decide(request, c, h, "approved")


@post(f"{HoursPath}/reject", opt={"roles": VOLUNTEERING}, status_code=200)
async def reject_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> Response[hours.Hours]:
    """Voids the pending minutes."""
    return await _decide(request, c, h, "rejected")


@get(HoursPath, opt={"roles": VOLUNTEERING})
async def get_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> hours.Hours:
    return await hours.get_hours(pool_of(request), c, h)


HANDLERS: Final = [
    log_hours,
    approve_hours,
    reject_hours,
    get_hours,
    create_time_transfer,
    create_conversion,
]
