"""The operator's rule-set editor and the replay of a draft (SPEC section 14).

The editor publishes exactly as `PUT …/rules` with a YAML body does (same parser, same
`rules.publish`); "check" runs the same parser and stores nothing. A refusal names the
field, the rule and the YAML line; the page keeps the draft and marks that line. The
simulation is `POST …/rules/simulate` with `replay` over the last 30 days: the same
`replay` call, writing nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import yaml  # type: ignore[import-untyped]
from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect

from service.api.deps import OPERATOR, db, principal_of, rules_of
from service.db import Queryable
from service.errors import ValidationFailed
from service.rules import service as rules
from service.rules import store
from service.rules.book import ActiveRules
from service.rules.engine import compile_rule_set
from service.rules.model import RuleSet, parse_rule_set, to_document
from service.rules.replay import Replay, ReplayMember, replay
from service.web.pages.organiser import community_of, set_zone
from service.web.render import html

Req = Request[Any, Any, Any]
ROLES: Final = {"roles": OPERATOR}
YAML_TYPE: Final = "application/yaml"
REPLAY_DAYS: Final = 30
BAR_STEPS: Final = 10  # a difference's bar is 1…10 tenths of the largest one
_LINE: Final = re.compile(r"\(line (\d+)(?:, column \d+)?\)")


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """A refused draft: the service's own message, and the YAML line it names."""

    detail: str
    line: int | None


def problem_of(err: ValidationFailed) -> Problem:
    found = _LINE.findall(err.detail)
    return Problem(detail=err.detail, line=int(found[-1]) if found else None)


def signed(value: int) -> str:
    """A difference with its sign in text: +12, −5, 0."""
    if value > 0:
        return f"+{value:,}"
    return f"\u2212{-value:,}" if value < 0 else "0"


async def _form(request: Req) -> tuple[str, str]:
    """The draft (with the browser's CRLF line ends made LF, so lines count as
    typed) and the button pressed."""
    form = await request.form()
    draft, action = form.get("draft"), form.get("action")
    text = draft.replace("\r\n", "\n") if isinstance(draft, str) else ""
    return text, action if isinstance(action, str) else ""


def _parsed(draft: str) -> RuleSet | Problem:
    try:
        return parse_rule_set(draft.encode(), YAML_TYPE)
    except ValidationFailed as err:
        return problem_of(err)


async def _text_of(conn: Queryable, community: str, version: ActiveRules) -> str:
    """A version as the editor shows it: the YAML it was published as (its comments
    kept), else its document written as YAML."""
    if version.version:
        row = await store.rule_set_source(conn, community, version.version)
        if row is not None and "yaml" in row["media_type"] and row["source"]:
            return str(row["source"])
    return str(yaml.safe_dump(to_document(version.rule_set), sort_keys=False, allow_unicode=True))


async def _editor(
    request: Req,
    community: str,
    draft: str | None = None,
    problem: Problem | None = None,
    notice: str | None = None,
    shown: int | None = None,
    status: int = 200,
) -> Response[str]:
    """The editor page: the version in force, the draft (by default the text of
    version `shown`, else of the version in force) and every version."""
    book = rules_of(request)
    async with db(request) as conn:
        await set_zone(request, conn, community)
        active = await book.active(conn, community)
        versions = await book.versions(conn, community)
        loaded = await book.version(conn, community, shown) if shown is not None else None
        if draft is None:
            shown = (loaded or active).version
            draft = await _text_of(conn, community, loaded or active)
    now = datetime.now(UTC)
    return html(
        request,
        "rules/editor.html",
        status=status,
        active=active,
        versions=list(reversed(versions)),
        now=now,
        shown=shown,
        notice=notice,
        **_editor_ctx(draft, problem),
    )


def _editor_ctx(draft: str, problem: Problem | None) -> dict[str, Any]:
    return {
        "draft": draft,
        "lines": range(1, draft.count("\n") + 2),
        "problem": problem,
        "days": REPLAY_DAYS,
    }


@get("/office/rules", opt=ROLES)
async def editor_page(
    request: Req, version: FromQuery[int | None] = None, published: FromQuery[int | None] = None
) -> Response[str]:
    community = community_of(request)
    t = request.state.t
    notice = t("rules.published", version=published) if published is not None else None
    return await _editor(request, community, notice=notice, shown=version)


@post("/office/rules", opt=ROLES, status_code=200)
async def publish_or_check(request: Req) -> Response[Any]:
    """`action=publish` stores a new version as `PUT …/rules` does and goes back to
    the editor (303); anything else only checks. A refusal keeps the draft (422)."""
    community = community_of(request)
    draft, action = await _form(request)
    parsed = _parsed(draft)
    if isinstance(parsed, Problem):
        return await _editor(request, community, draft, problem=parsed, status=422)
    if action != "publish":
        notice = request.state.t("rules.check_ok", rules=len(parsed.rules))
        return await _editor(request, community, draft, notice=notice)
    async with db(request) as conn:
        done = await rules.publish(
            conn,
            rules_of(request),
            community,
            to_document(parsed),
            draft,
            YAML_TYPE,
            None,
            principal_of(request).key_id,
        )
    return Redirect(f"/app/office/rules?published={done.version}", status_code=303)


def _bars(members: list[ReplayMember]) -> list[tuple[ReplayMember, int]]:
    """Each member with the length of its difference's bar, in tenths of the
    largest difference (at least one tenth for any difference at all)."""
    largest = max((abs(m.difference) for m in members), default=0)
    return [
        (m, max(1, -(-abs(m.difference) * BAR_STEPS // largest)) if m.difference else 0)
        for m in members
    ]


async def _simulation(
    request: Req, community: str, draft: str, rule_set: RuleSet | None
) -> Response[str]:
    """Replays the last `REPLAY_DAYS` days under `rule_set` (None: the version in
    force), as `POST …/rules/simulate` with `replay` does."""
    end = datetime.now(UTC)
    start = end - timedelta(days=REPLAY_DAYS)
    compiled = compile_rule_set(rule_set, 0) if rule_set is not None else None
    floor = rule_set.floor if rule_set is not None else None
    async with db(request) as conn:
        await set_zone(request, conn, community)
        result: Replay = await replay(
            conn, rules_of(request), community, start, end, compiled, floor
        )
    return html(
        request,
        "rules/simulate.html",
        result=result,
        rows=_bars(result.members),
        signed=signed,
        **_editor_ctx(draft, None),
    )


@get("/office/rules/simulate", opt=ROLES)
async def simulate_in_force(request: Req) -> Response[str]:
    """The version in force replayed over the last 30 days, its text in the editor."""
    community = community_of(request)
    async with db(request) as conn:
        active = await rules_of(request).active(conn, community)
        draft = await _text_of(conn, community, active)
    return await _simulation(request, community, draft, None)


@post("/office/rules/simulate", opt=ROLES, status_code=200)
async def simulate_draft(request: Req) -> Response[str]:
    """The draft replayed over the last 30 days; a draft with an error goes back to
    the editor with the line marked, as publishing would (422)."""
    community = community_of(request)
    draft, _ = await _form(request)
    parsed = _parsed(draft)
    if isinstance(parsed, Problem):
        return await _editor(request, community, draft, problem=parsed, status=422)
    return await _simulation(request, community, draft, parsed)


HANDLERS: Final = [editor_page, publish_or_check, simulate_in_force, simulate_draft]
