"""Member lifecycle endpoints (operators): closing a member who moved out, moving a
member to another household, and the history of its households."""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import Request, Response, get, post, put
from litestar.params import FromPath
from msgspec import Meta

from service import setup
from service.api.deps import (
    OPERATOR,
    body,
    changed,
    db,
    fingerprint,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.wire import ClientId, CommunityId, Strict
from service.db import Conn
from service.i18n import system_reason
from service.network import moves
from service.network.moves import MovedMember, MoveTo

Req = Request[Any, Any, Any]
MemberPath = "/v1/communities/{c:str}/members/{m:str}"


class CloseIn(Strict):
    # Written on the close's transaction and the member; the community's default
    # reason (in its language) when none is given.
    reason: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class HouseholdIn(Strict):
    household: ClientId


async def _close_terms(request: Req, conn: Conn, c: str) -> setup.CloseTerms:
    """What the rule set in force says about closing a member of community `c`."""
    book = rules_of(request)
    active = await book.active(conn, c)
    closing = active.rule_set.member_close
    return setup.CloseTerms(
        params=active.rule_set.to_params(),
        points_to=closing.points_to,
        minutes_to=closing.minutes_to,
        default_reason=system_reason(await book.language(conn, c), "member_closed"),
        rule_version=active.version,
    )


@post(
    MemberPath + "/close",
    opt={"roles": OPERATOR},
    status_code=200,
    operation_class=json_body(CloseIn, required=False),
)
async def close_member(
    request: Req, c: FromPath[str], m: FromPath[str]
) -> Response[setup.ClosedMember]:
    """Closes a member who moved out: its points above the baseline and its minutes go
    where the rule set says (`member_close`), in one transaction with the close; its
    accounts take nothing more. Closing a closed member again is a replay."""
    raw = await request.body()
    data = await body(request, CloseIn) if raw.strip() else CloseIn()
    async with db(request) as conn:
        terms = await _close_terms(request, conn, c)
        actor = principal_of(request).key_id
        closed, replayed = await setup.close_member(conn, c, m, data.reason, actor, terms)
    return changed(closed, replayed)


@put(MemberPath + "/household", opt={"roles": OPERATOR}, operation_class=json_body(HouseholdIn))
async def move_member(request: Req, c: FromPath[str], m: FromPath[str]) -> Response[setup.Member]:
    """Moves a member to another household (of any property company); moving it where
    it already lives is a replay. Offsets made for the old household stay as they were."""
    data = await body(request, HouseholdIn)
    async with db(request) as conn:
        actor = principal_of(request).key_id
        member, replayed = await setup.move_member(conn, c, m, data.household, actor)
    return changed(member, replayed)


@get(MemberPath + "/household/history", opt={"roles": OPERATOR})
async def household_history(
    request: Req, c: FromPath[str], m: FromPath[str]
) -> setup.HouseholdHistory:
    """Every change of the member's household, oldest first, with when and by whom."""
    async with db(request) as conn:
        return await setup.household_history(conn, c, m)


class MoveIn(Strict):
    id: ClientId
    to_community: CommunityId
    to_member: ClientId
    household: ClientId


@post(MemberPath + "/move", opt={"roles": OPERATOR}, operation_class=json_body(MoveIn))
async def move_house(request: Req, c: FromPath[str], m: FromPath[str]) -> Response[MovedMember]:
    """The member moves to another community of the district (SPEC section 16): its
    points above the baseline and its minutes go with it, lots with their expiry, and
    the old membership is closed with its history; once per id."""
    data = await body(request, MoveIn)
    book = rules_of(request)
    to = MoveTo(
        id=data.id, community=data.to_community, member=data.to_member, household=data.household
    )
    async with db(request) as conn:
        terms = await _close_terms(request, conn, c)
        to_params, to_language = (
            await book.params(conn, to.community),
            await book.language(conn, to.community),
        )
        moved, replayed = await moves.move_house(
            conn,
            c,
            m,
            to,
            fingerprint(data),
            principal_of(request).key_id,
            terms,
            to_params,
            to_language,
        )
    return written(moved, replayed)


HANDLERS: Final = [close_member, move_member, household_history, move_house]
