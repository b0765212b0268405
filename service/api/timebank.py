"""Time bank endpoints (volunteer apps, organisers, residents, operators): volunteer
hours, their queue and approval, time transfers, and conversions of minutes to points."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter
from msgspec import Meta

from service.api.deps import (
    body,
    changed,
    db,
    explaining,
    fingerprint,
    fingerprint_since,
    pool_of,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.wire import Amount, ClientId, CommunityId, Strict, Text
from service.errors import DomainError
from service.ledger import service as ledger
from service.ledger.batch import submit_one
from service.ledger.model import Transaction
from service.ledger.views import TransactionOut, transaction_out
from service.people import service as people
from service.timebank import hours
from service.timebank import service as timebank

Req = Request[Any, Any, Any]
TRANSFERS: Final = frozenset({"operator", "volunteer_app", "resident"})
VOLUNTEERING: Final = frozenset({"operator", "volunteer_app"})
# Approvals are for organisers and operators only (SPEC 11), never the logging key.
DECIDING: Final = frozenset({"operator", "organiser"})
HOURS_READERS: Final = frozenset({"operator", "volunteer_app", "organiser"})
HoursPath = "/v1/communities/{c:str}/volunteer-hours/{h:str}"


class HoursIn(Strict):
    id: ClientId
    member: ClientId
    activity: Annotated[str, Meta(min_length=1, max_length=200)]
    started_at: Annotated[datetime, Meta(tz=True)]
    minutes: Annotated[int, Meta(ge=1, le=24 * 60)]
    organiser: ClientId | None = None
    team: ClientId | None = None
    # The member's community, when it is another of the district (SPEC section 16):
    # hours served here, credited there.
    member_community: CommunityId | None = None


class TimeTransferIn(Strict):
    id: ClientId
    from_member: ClientId
    to_member: ClientId
    minutes: Amount
    memo: Text | None = None
    # The receiver's community, when it is another of the district (SPEC section 16).
    to_member_community: CommunityId | None = None


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
    """Moves minutes between two members; a resident key gives its own, or those of
    a member it is a proxy of with `time` (recorded as `on_behalf_of`)."""
    tx, replayed = await give_time(request, c, await body(request, TimeTransferIn))
    return written(transaction_out(tx), replayed)


async def give_time(request: Req, c: str, data: TimeTransferIn) -> tuple[Transaction, bool]:
    """The time transfer `data`, by the request's key: the API's and the resident
    page's one way (the key's own minutes, or a principal's with `time`)."""
    principal = principal_of(request)
    pool = pool_of(request)
    on_behalf_of = await people.acting_for(pool, principal, c, data.from_member, "time")
    new = timebank.time_transfer(
        data.id,
        data.from_member,
        data.to_member,
        data.minutes,
        data.memo,
        fingerprint_since(data, "to_member_community"),
        principal.key_id,
        on_behalf_of=on_behalf_of,
        across=data.to_member_community is not None,
    )
    book = rules_of(request)
    params = await book.params(pool, c)
    away = data.to_member_community
    if away is not None:
        async with db(request) as conn:
            return await timebank.transfer_away(
                conn, c, away, new, params, await book.params(conn, away)
            )
    write = submit_one(request.app.state.coalescer, pool, c, new, params)
    return await explaining(pool, c, write)


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
        team=data.team,
        member_community=data.member_community,
    )
    async with db(request) as conn:
        result, replayed = await hours.log_hours(
            conn, rules_of(request), c, log, _hours_hash(data), principal_of(request).key_id
        )
    return written(result, replayed)


def _hours_hash(data: HoursIn) -> bytes:
    """The request's fingerprint; without a team, the one it had before hours had
    teams, so that a repeat of a request logged then is still a replay."""
    return fingerprint_since(data, "team", "member_community")


@get("/v1/communities/{c:str}/volunteer-hours", opt={"roles": HOURS_READERS})
async def list_hours(
    request: Req,
    c: FromPath[str],
    status: FromQuery[hours.HoursStatus | None] = None,
    team: Annotated[str | None, QueryParameter(max_length=64)] = None,
    member: Annotated[str | None, QueryParameter(max_length=64)] = None,
    cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=hours.MAX_LIMIT)] = 50,
) -> hours.HoursPage:
    """The queue: hours oldest first, by `status` (all when omitted), `team` and
    `member`; an organiser limited to teams sees only its teams' hours."""
    async with db(request) as conn:
        return await hours.hours_page(
            conn,
            c,
            principal_of(request),
            status=status,
            team=team,
            member=member,
            cursor=cursor,
            limit=limit,
        )


async def _decide(request: Req, c: str, h: str, status: hours.Decision) -> Response[hours.Hours]:
    async with db(request) as conn:
        result, replayed = await hours.decide(
            conn, rules_of(request), c, h, status, principal_of(request)
        )
    return changed(result, replayed)


@post(f"{HoursPath}/approve", opt={"roles": DECIDING}, status_code=200)
async def approve_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> Response[hours.Hours]:
    """Records this key's approval; the last one needed posts the minutes and runs the
    rules on `volunteer.approved`, together."""
    return await _decide(request, c, h, "approved")


@post(f"{HoursPath}/reject", opt={"roles": DECIDING}, status_code=200)
async def reject_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> Response[hours.Hours]:
    """Voids the pending minutes."""
    return await _decide(request, c, h, "rejected")


@get(HoursPath, opt={"roles": HOURS_READERS})
async def get_hours(request: Req, c: FromPath[str], h: FromPath[str]) -> hours.Hours:
    return await hours.get_hours(pool_of(request), c, h, principal_of(request))


HANDLERS: Final = [
    log_hours,
    list_hours,
    approve_hours,
    reject_hours,
    get_hours,
    create_time_transfer,
    create_conversion,
]
