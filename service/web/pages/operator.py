"""The community office's pages (operators): the dashboard, the 红榜 poster, members
and households, and a resident's sign-in link printed as a QR code (SPEC section 14).

Each page calls the use case its API endpoint calls: the summary and leaderboard of
`…/reports`, the member's balance and statement, `sessions.issue_link` of
`…/sign-in-links`, `setup.create_household|create_member`. The rule-set editor is
in rules.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from service import setup
from service.api.deps import OPERATOR, db, fingerprint, principal_of, rules_of
from service.api.sign_in import link_url
from service.api.wire import HouseholdIn, MemberIn
from service.errors import DomainError, ValidationFailed
from service.ledger import lots, reads
from service.ledger.model import member_address
from service.reports import service as reports
from service.sessions import service as sessions
from service.setup.service import list_households, search_members
from service.web.pages.organiser import community_of, set_zone
from service.web.render import html

Req = Request[Any, Any, Any]
ROLES: Final = {"roles": OPERATOR}
# The summary over all time, as `GET …/reports/summary` without from and to.
_FAR_PAST: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE: Final = datetime(9999, 1, 1, tzinfo=UTC)
_PERIOD: Final = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
POSTER_SIZE: Final = 20
STATEMENT_SIZE: Final = 10
FLOWS: Final = ("issued", "redeemed", "offset", "expired")


@get("/office", opt=ROLES)
async def dashboard(request: Req) -> Response[str]:
    """The last 12 months' points (a chart and the same numbers as a table) and the
    liability now, from the summary report."""
    c = community_of(request)
    book, now = rules_of(request), datetime.now(UTC)
    async with db(request) as conn:
        await set_zone(request, conn, c)
        active = await book.active(conn, c)
        summary = await reports.summary(conn, c, _FAR_PAST, _FAR_FUTURE, active.rule_set, now)
        months = await reports.monthly(conn, c, await book.timezone(conn, c), now)
    points = next(a for a in summary.assets if a.asset == "points")
    t = request.state.t
    chart = {
        "periods": [m.period for m in months],
        "series": [
            {"name": t(f"office.flow.{f}"), "data": [getattr(m, f) for m in months]} for f in FLOWS
        ],
        "outstanding": {
            "name": t("office.flow.outstanding"),
            "data": [m.outstanding for m in months],
        },
    }
    return html(
        request,
        "office/dashboard.html",
        months=months,
        flows=FLOWS,
        points=points,
        fen_per_point=active.rule_set.fen_per_point,
        chart=msgspec.json.encode(chart).decode(),
    )


@get("/office/poster", opt=ROLES)
async def poster(request: Req) -> Response[str]:
    """The month's 红榜 (leaderboard report: opted-out members left out), to print."""
    c = community_of(request)
    async with db(request) as conn:
        await set_zone(request, conn, c)
        tz = await rules_of(request).timezone(conn, c)
        period = request.query_params.get("period") or ""
        if not _PERIOD.match(period):
            period = reports.last_months(datetime.now(UTC), tz, 1)[0]
        board = await reports.leaderboard(conn, c, period, POSTER_SIZE)
        community = await setup.get_community(conn, c)
    year, month = period.split("-")
    return html(
        request,
        "office/poster.html",
        board=board,
        community=community,
        period=period,
        year=int(year),
        month=int(month),
    )


@get("/office/members", opt=ROLES)
async def members(request: Req) -> Response[str]:
    c = community_of(request)
    text = (request.query_params.get("q") or "").strip()[:100]
    async with db(request) as conn:
        found = await search_members(conn, c, text or None)
        households = await list_households(conn, c)
    return html(
        request,
        "office/members.html",
        found=found,
        q=text,
        households=households,
        form={},
        error=None,
    )


@get("/office/members/{m:str}", opt=ROLES)
async def member(request: Req, m: FromPath[str]) -> Response[str]:
    """A member: balance (as `GET …/balance`), recent statement, and the sign-in link button."""
    c = community_of(request)
    async with db(request) as conn:
        await set_zone(request, conn, c)
        person = await setup.get_member(conn, c, m)
        balance = await lots.member_balance(conn, c, m, await rules_of(request).params(conn, c))
        statement = await reads.entries_page(
            conn, c, member_address(m, "points"), cursor=None, limit=STATEMENT_SIZE
        )
    return html(request, "office/member.html", person=person, balance=balance, statement=statement)


@post("/office/members/{m:str}/sign-in-link", opt=ROLES, status_code=200)
async def sign_in_link(request: Req, m: FromPath[str]) -> Response[str]:
    """A new one-time link (as `POST …/sign-in-links`), shown on this answer only,
    as a QR code and its address, to print as a card; never cached."""
    c = community_of(request)
    async with db(request) as conn:
        await set_zone(request, conn, c)
        person = await setup.get_member(conn, c, m)
        link = await sessions.issue_link(conn, c, m, principal_of(request), sessions.LINK_TTL_MAX_S)
        community = await setup.get_community(conn, c)
    url = link_url(request.app.state.settings, request, link.token)
    response = html(
        request, "office/link.html", person=person, url=url, link=link, community=community
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@get("/office/households", opt=ROLES)
async def households(request: Req) -> Response[str]:
    c = community_of(request)
    async with db(request) as conn:
        found = await list_households(conn, c)
    return html(request, "office/households.html", households=found, form={}, error=None)


async def _fields(request: Req, names: tuple[str, ...]) -> dict[str, str]:
    form = await request.form()
    return {n: str(form.get(n) or "").strip() for n in names}


def _wire(type_: type[Any], fields: dict[str, Any]) -> Any:
    """The form as the API's request body, validated the same way (422 in words)."""
    try:
        return msgspec.convert(fields, type_)
    except msgspec.ValidationError as err:
        raise ValidationFailed(str(err)) from err


@post("/office/households", opt=ROLES)
async def create_household(request: Req) -> Response[Any]:
    """As `POST …/households`: the id is the client id, so sending it twice is a replay."""
    c = community_of(request)
    fields = await _fields(request, ("id", "address", "property_company"))
    async with db(request) as conn:
        try:
            data = _wire(HouseholdIn, {**fields, "address": fields["address"] or None})
            await setup.create_household(
                conn, c, data.id, data.address, data.property_company, fingerprint(data)
            )
        except DomainError as err:
            found = await list_households(conn, c)
            return html(
                request,
                "office/households.html",
                status=err.status,
                households=found,
                form=fields,
                error=err,
            )
    return Redirect("/app/office/households", status_code=303)


@post("/office/members", opt=ROLES)
async def create_member(request: Req) -> Response[Any]:
    """As `POST …/members`: opens the accounts and the baseline credit."""
    c = community_of(request)
    fields = await _fields(request, ("id", "household", "name"))
    book = rules_of(request)
    async with db(request) as conn:
        try:
            data = _wire(MemberIn, {**fields, "name": fields["name"] or None})
            params, language = await book.params(conn, c), await book.language(conn, c)
            await setup.create_member(
                conn,
                c,
                data.id,
                data.household,
                data.name,
                fingerprint(data),
                params,
                language=language,
            )
        except DomainError as err:
            found, homes = await search_members(conn, c, None), await list_households(conn, c)
            return html(
                request,
                "office/members.html",
                status=err.status,
                found=found,
                q="",
                households=homes,
                form=fields,
                error=err,
            )
    return Redirect(f"/app/office/members/{data.id}", status_code=303)


HANDLERS: Final = [
    dashboard,
    poster,
    members,
    create_member,
    member,
    sign_in_link,
    households,
    create_household,
]
