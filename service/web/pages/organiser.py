"""The organisers' pages: the queue of their teams' pending volunteer hours, to
approve or reject one by one or several at once (SPEC sections 11 and 14).

Every decision is `hours.decide`, the use case behind `POST …/volunteer-hours/{h}/
approve|reject`, with the session's principal, so the API's rules hold unchanged:
an organiser limited to teams decides only theirs, and the key that logged hours
never decides them. Several at once are decided one after the other, each on its
own; the page then lists every one's outcome, so one refusal hides no other.
Without JavaScript the queue is one form (POST, then a redirect to the queue with
the outcomes in its address); with htmx a row's button updates that row in place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from service.api.deps import db, principal_of, rules_of
from service.db import Conn, Queryable
from service.errors import DomainError, Forbidden, InvalidState, NotFound
from service.ledger.model import ID_PATTERN
from service.setup import get_member
from service.timebank import hours
from service.web.render import html

Req = Request[Any, Any, Any]
ROLES: Final = {"roles": frozenset({"organiser", "operator"})}
QUEUE_LIMIT: Final = 50
MAX_AT_ONCE: Final = 50
_ID: Final = re.compile(ID_PATTERN)
_ACTIONS: Final[dict[str, hours.Decision]] = {"approve": "approved", "reject": "rejected"}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What deciding one hours did: `code` is one of approved, recorded (an approval
    that still needs others), rejected, replayed, own (logged by this key),
    other_team, decided (already decided the other way), not_found, or a domain
    error's code; `hours` when this key may still read them."""

    id: str
    code: str
    hours: hours.Hours | None = None


def community_of(request: Req) -> str:
    """The community of the signed-in key; the office's pages are a community's."""
    community = principal_of(request).community
    if community is None:
        raise Forbidden("these pages are a community's: sign in with its operator or organiser key")
    return community


async def set_zone(request: Req, conn: Queryable, community: str) -> None:
    """Times on the page in the community's time zone (render.when reads it)."""
    request.state.tz = ZoneInfo(await rules_of(request).timezone(conn, community))


async def _names(conn: Conn, community: str, members: set[str]) -> dict[str, str]:
    """Members' names for the queue (their id where they have none)."""
    names = {}
    for member in sorted(members):
        try:
            names[member] = (await get_member(conn, community, member)).name or member
        except NotFound:
            names[member] = member
    return names


async def decide_one(request: Req, conn: Conn, community: str, h: str, action: str) -> Outcome:
    """Decides hours `h` as `POST …/volunteer-hours/{h}/approve|reject` does; a
    refusal is an outcome, said in words, never an error page."""
    principal = principal_of(request)
    status = _ACTIONS.get(action)
    if status is None or not _ID.match(h):
        return Outcome(id=h, code="not_found")
    try:
        result, replayed = await hours.decide(
            conn, rules_of(request), community, h, status, principal
        )
    except Forbidden:
        try:
            seen = await hours.get_hours(conn, community, h, principal)
        except Forbidden:
            return Outcome(id=h, code="other_team")
        return Outcome(
            id=h, code="own" if seen.logged_by == principal.key_id else "forbidden", hours=seen
        )
    except NotFound:
        return Outcome(id=h, code="not_found")
    except InvalidState:
        return Outcome(
            id=h, code="decided", hours=await hours.get_hours(conn, community, h, principal)
        )
    except DomainError as err:
        return Outcome(id=h, code=err.code)
    if replayed:
        code = "replayed"
    elif status == "rejected":
        code = "rejected"
    else:
        code = "approved" if result.status == "approved" else "recorded"
    return Outcome(id=h, code=code, hours=result)


async def _outcomes_of(request: Req, conn: Conn, community: str) -> list[Outcome]:
    """The outcomes a decision's redirect names (`?r=<code>:<id>`), with the hours."""
    shown = []
    for item in request.query_params.getall("r", [])[:MAX_AT_ONCE]:
        code, _, h = item.partition(":")
        if not _ID.match(h) or not code.replace("_", "").isalpha():
            continue
        try:
            seen: hours.Hours | None = await hours.get_hours(
                conn, community, h, principal_of(request)
            )
        except (NotFound, Forbidden):
            seen = None
        shown.append(Outcome(id=h, code=code, hours=seen))
    return shown


@get("/hours", opt=ROLES)
async def queue(request: Req) -> Response[str]:
    """The pending hours the key may decide, oldest first (as `GET …/volunteer-hours
    ?status=pending&team=`), and the outcomes of the decision just made."""
    community = community_of(request)
    team = request.query_params.get("team") or None
    cursor = request.query_params.get("cursor") or None
    async with db(request) as conn:
        await set_zone(request, conn, community)
        page = await hours.hours_page(
            conn,
            community,
            principal_of(request),
            status="pending",
            team=team,
            member=None,
            cursor=cursor,
            limit=QUEUE_LIMIT,
        )
        outcomes = await _outcomes_of(request, conn, community)
        members = {h.member for h in page.hours} | {o.hours.member for o in outcomes if o.hours}
        names = await _names(conn, community, members)
    return html(
        request,
        "organiser/queue.html",
        page=page,
        outcomes=outcomes,
        names=names,
        team=team,
        teams=principal_of(request).teams,
        more=None if page.next_cursor is None else _queue_url(team, page.next_cursor),
    )


def _queue_url(
    team: str | None, cursor: str | None = None, outcomes: Sequence[Outcome] = ()
) -> str:
    query: list[tuple[str, str]] = []
    if team:
        query.append(("team", team))
    if cursor:
        query.append(("cursor", cursor))
    query += [("r", f"{o.code}:{o.id}") for o in outcomes]
    return "/app/hours" + (f"?{urlencode(query)}" if query else "")


@post("/hours", opt=ROLES)
async def decide_many(request: Req) -> Response[Any]:
    """The queue's form: a row's own button (`one=approve:<id>`), or the ticked rows
    (`hours`) with `action`. Each is decided on its own; all outcomes are shown."""
    community = community_of(request)
    form = await request.form()
    one = form.get("one")
    if isinstance(one, str) and ":" in one:
        action, _, h = one.partition(":")
        chosen = [(action, h)]
    else:
        action = str(form.get("action") or "")
        ticked = [v for v in form.getall("hours", []) if isinstance(v, str)]
        chosen = [(action, h) for h in dict.fromkeys(ticked)][:MAX_AT_ONCE]
    team = form.get("team")
    async with db(request) as conn:
        outcomes = [await decide_one(request, conn, community, h, a) for a, h in chosen]
    target = _queue_url(team if isinstance(team, str) else None, outcomes=outcomes)
    if not outcomes:
        target = _queue_url(None, outcomes=[Outcome(id="-", code="none_chosen")])
    return Redirect(target, status_code=303)


@post("/hours/{h:str}/{action:str}", opt=ROLES, status_code=200)
async def decide_row(request: Req, h: FromPath[str], action: FromPath[str]) -> Response[Any]:
    """A row's button with htmx: that row again, saying what happened to it."""
    community = community_of(request)
    async with db(request) as conn:
        await set_zone(request, conn, community)
        outcome = await decide_one(request, conn, community, h, action)
        names = await _names(conn, community, {outcome.hours.member} if outcome.hours else set())
    if request.headers.get("hx-request") != "true":
        return Redirect(_queue_url(None, outcomes=[outcome]), status_code=303)
    return html(request, "organiser/_decided_row.html", outcome=outcome, names=names)


HANDLERS: Final = [queue, decide_many, decide_row]
