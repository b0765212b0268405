"""Operators' reports, and a member's choice to stay off the leaderboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from litestar import Request, Response, get, patch
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from service.api.deps import (
    OPERATOR,
    FromQueryInstant,
    ToQueryInstant,
    body,
    db,
    instant,
    principal_of,
    rules_of,
)
from service.api.exports import sheet_response
from service.api.openapi import json_body
from service.api.wire import Strict
from service.exports import service as exports
from service.people import service as people
from service.reports import service as reports

Req = Request[Any, Any, Any]
_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


SummaryFormat = Annotated[
    Literal["json", "csv"],
    QueryParameter(name="format", description="json (the default) or csv (UTF-8 with BOM)."),
]


class MemberPatchIn(Strict):
    leaderboard_opt_out: bool


@get("/v1/communities/{c:str}/reports/summary", opt={"roles": OPERATOR})
async def summary(
    request: Req,
    c: FromPath[str],
    start: FromQueryInstant = None,
    end: ToQueryInstant = None,
    fmt: SummaryFormat = "json",
) -> reports.Summary | Response[bytes] | Stream:
    """Per asset: issued, deducted, offset, redeemed, expired, converted, outstanding;
    and, as of now, the liability and what expires in the next 90 days. With
    `format=csv`, the same numbers as a CSV attachment, one row per asset."""
    since, until = instant(start, "from"), instant(end, "to")
    span = (since or _FAR_PAST, until or _FAR_FUTURE)
    async with db(request) as conn:
        if fmt == "csv":
            book, now = rules_of(request), datetime.now(UTC)
            return sheet_response(await exports.summary_sheet(conn, book, c, span, now))
        active = await rules_of(request).active(conn, c)
        return await reports.summary(conn, c, *span, active.rule_set, datetime.now(UTC))


@get("/v1/communities/{c:str}/reports/leaderboard", opt={"roles": OPERATOR})
async def leaderboard(
    request: Req,
    c: FromPath[str],
    period: Annotated[str, QueryParameter(max_length=7)],
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 10,
) -> reports.Leaderboard:
    """Top earners of a month by points earned through rules; opted-out members are left out."""
    async with db(request) as conn:
        return await reports.leaderboard(conn, c, period, limit)


@get(
    "/v1/communities/{c:str}/reports/teams",
    opt={"roles": frozenset({"operator", "organiser"})},
)
async def teams(
    request: Req,
    c: FromPath[str],
    period: Annotated[str, QueryParameter(max_length=7)],
) -> reports.TeamsReport:
    """Per volunteer team, a month's approved hours (by when the work started, in the
    community's time zone), their minutes and volunteers, and the points the rules
    awarded for them; an organiser limited to teams sees only its own."""
    async with db(request) as conn:
        tz = await rules_of(request).timezone(conn, c)
        return await reports.teams(conn, c, period, tz, principal_of(request).teams)


@patch(
    "/v1/communities/{c:str}/members/{m:str}",
    opt={"roles": frozenset({"operator", "resident"})},
    operation_class=json_body(MemberPatchIn),
)
async def patch_member(
    request: Req, c: FromPath[str], m: FromPath[str]
) -> reports.LeaderboardChoice:
    """Sets `leaderboard_opt_out` (an operator for anyone; a resident for itself,
    not for those it is a proxy of)."""
    async with db(request) as conn:
        await people.only_itself(conn, principal_of(request), c, m, "change its leaderboard choice")
        data = await body(request, MemberPatchIn)
        return await reports.set_opt_out(conn, c, m, data.leaderboard_opt_out)


HANDLERS: Final = [summary, leaderboard, teams, patch_member]
