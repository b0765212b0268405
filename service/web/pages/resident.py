"""The resident's pages (SPEC section 14), phone first: balance, statement, spend
code, mandates, proxies and the time bank of the signed-in resident's member.

Each page does what the matching API handler does, with the same service calls and
the same checks (`may_read`, `acting_for`, `only_itself`): a page is the API with
HTML around it. `?for=<member>` shows a member the resident is a proxy of, as far
as that grant's scopes allow (`acting_for` decides; a stranger is 404, a missing
scope 403), and is carried by every link and form of the page.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC
from typing import Any, Final, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath
from litestar.response import Redirect

from service import setup
from service.api.consent import MandateIn, SpendCodeIn, _company
from service.api.deps import db, principal_of, rules_of
from service.api.people import ProxyIn
from service.api.setup import may_read
from service.api.timebank import TimeTransferIn, give_time
from service.consent import service as consent
from service.db import Conn
from service.errors import DomainError, Forbidden, NotFound, RetryLater, ValidationFailed
from service.ledger import lots, reads
from service.ledger.model import ID_PATTERN, Asset, member_address
from service.offsets.service import offset_year
from service.people import service as people
from service.timebank import hours
from service.web.i18n import Translator
from service.web.render import html

Req = Request[Any, Any, Any]
T = TypeVar("T")
RESIDENT: Final = {"roles": frozenset({"resident"})}
PAGE_SIZE: Final = 20
_ID = re.compile(ID_PATTERN)
# The ledger's kinds a statement names in words (others show as they are).
KINDS: Final = frozenset(
    {
        "transfer",
        "award",
        "deduction",
        "opening",
        "expiry",
        "member_close",
        "offset",
        "reversal",
        "time_transfer",
        "conversion",
        "volunteer_hours",
        "redemption",
        "redemption_return",
    }
)


def _subject(request: Req) -> tuple[str, str]:
    """(community, member) this page is about: the resident's own member, or the one
    `?for=` names (the service calls' `acting_for` then decide if it may)."""
    principal = principal_of(request)
    if principal.community is None or principal.member is None:
        # An admin passes every role check, but has no member of its own to show.
        raise Forbidden("these pages are a resident's: open the member's sign-in link")
    other = request.query_params.get("for")
    if other and other != principal.member:
        if not _ID.match(other):
            raise NotFound(f"no member {other!r} in community {principal.community!r}")
        return principal.community, other
    return principal.community, principal.member


def _href(request: Req, member: str) -> Any:
    """`href("/app/me/statement", asset="minutes")`: the link, `?for=` kept."""
    own = principal_of(request).member == member

    def href(path: str, **params: Any) -> str:
        query = {} if own else {"for": member}
        query.update({k: str(v) for k, v in params.items() if v is not None})
        return f"{path}?{urlencode(query)}" if query else path

    return href


async def _page(
    request: Req, conn: Conn, c: str, m: str, template: str, status: int = 200, **ctx: Any
) -> Response[str]:
    """`template` for member `m`, in its community's time zone, with the nav's links."""
    community = await setup.get_community(conn, c)
    request.state.tz = ZoneInfo(community.timezone)
    me = principal_of(request).member
    return html(
        request,
        f"resident/{template}",
        status=status,
        subject=m,
        acting=m != me,
        href=_href(request, m),
        **ctx,
    )


def _message(request: Req, err: DomainError) -> str:
    """A refusal in the resident's words: the area's wording, the common one, or
    the service's own sentence. Overload (retry later) is not the form's business:
    it goes on to the app's error page, with its Retry-After."""
    if isinstance(err, RetryLater):
        raise err
    t: Translator = request.state.t
    return t.refusal(err.code, err.detail, "resident.error")


def _decode(type_: type[T], fields: dict[str, Any]) -> T:
    """A form's fields as the API's own request body, with its constraints."""
    try:
        return msgspec.convert(fields, type_, strict=True)
    except msgspec.ValidationError as err:
        raise ValidationFailed(str(err)) from err


def _text(form: FormMultiDict, name: str) -> str | None:
    value = form.get(name)
    return (value.strip() or None) if isinstance(value, str) else None


def _int(form: FormMultiDict, name: str) -> int | None:
    """A whole number typed into a form (None when left empty; 422 when not one)."""
    text = _text(form, name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise ValidationFailed(f"{name} must be a whole number")
    return int(text)


def _op_id(prefix: str) -> str:
    """A fresh client id for a form: a double submit is a replay, not a second write."""
    return f"{prefix}-{secrets.token_hex(8)}"


def _after(request: Req, m: str, path: str, done: str) -> Response[Any]:
    """POST → 303 → GET, saying what was done."""
    return Redirect(_href(request, m)(path, done=done), status_code=303)


# Balance ---------------------------------------------------------------------


@get("/me", opt=RESIDENT)
async def balance(request: Req) -> Response[str]:
    """The numbers of `GET …/members/{m}/balance`, and whom the resident acts for."""
    c, m = _subject(request)
    me = principal_of(request).member
    assert me is not None
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        params = await rules_of(request).params(conn, c)
        bal = await lots.member_balance(conn, c, m, params)
        member = await setup.get_member(conn, c, m)
        represented = await people.represented_by(conn, c, me)
        return await _page(
            request,
            conn,
            c,
            m,
            "balance.html",
            balance=bal,
            member=member,
            represented=represented.proxies,
            me=me,
        )


# Statement -------------------------------------------------------------------


@get("/me/statement", opt=RESIDENT)
async def statement(request: Req) -> Response[str]:
    """`GET …/members/{m}/statement`, newest first, PAGE_SIZE at a time ("更多")."""
    c, m = _subject(request)
    asset: Asset = "minutes" if request.query_params.get("asset") == "minutes" else "points"
    cursor = request.query_params.get("cursor") or None
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        page = await reads.entries_page(
            conn, c, member_address(m, asset), cursor=cursor, limit=PAGE_SIZE
        )
        return await _page(
            request,
            conn,
            c,
            m,
            "statement.html",
            page=page,
            asset=asset,
            first=cursor is None,
            kinds=KINDS,
        )


# Spend code ------------------------------------------------------------------


async def _readable_balance(request: Req, conn: Conn, c: str, m: str) -> lots.MemberBalance | None:
    """The balance, to help choose a limit, if this session may read it (a proxy
    with `spend` but not `read` issues codes without seeing the balance)."""
    try:
        await may_read(request, conn, c, m)
    except Forbidden:
        return None
    return await lots.member_balance(conn, c, m, await rules_of(request).params(conn, c))


@get("/me/spend-code", opt=RESIDENT)
async def spend_code_form(request: Req) -> Response[str]:
    c, m = _subject(request)
    async with db(request) as conn:
        await people.acting_for(conn, principal_of(request), c, m, "spend")
        bal = await _readable_balance(request, conn, c, m)
        return await _page(
            request, conn, c, m, "spend_code.html", code=None, error=None, balance=bal, form={}
        )


@post("/me/spend-code", opt=RESIDENT)
async def issue_spend_code(request: Req) -> Response[str]:
    """Issues the code as `POST …/spend-codes` does and shows it on this answer
    only: a code is a bearer consent, so it never goes into a URL (history,
    logs, Referer) and this page is not cached (`no-store`)."""
    c, m = _subject(request)
    principal = principal_of(request)
    form = await request.form()
    async with db(request) as conn:
        behalf = await people.acting_for(conn, principal, c, m, "spend")
        try:
            data = _decode(
                SpendCodeIn, {"max_points": _int(form, "max_points"), "store": _text(form, "store")}
            )
            code = await consent.issue_spend_code(
                conn, c, m, data.max_points, data.ttl_s, data.store, principal.key_id, behalf
            )
        except DomainError as err:
            bal = await _readable_balance(request, conn, c, m)
            return await _page(
                request,
                conn,
                c,
                m,
                "spend_code.html",
                status=err.status,
                code=None,
                error=_message(request, err),
                balance=bal,
                form=dict(form),
            )
        page = await _page(
            request,
            conn,
            c,
            m,
            "spend_code.html",
            code=code,
            expires_iso=code.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            error=None,
            balance=None,
            form={},
        )
    page.headers["Cache-Control"] = "no-store"
    return page


# Mandates --------------------------------------------------------------------


async def _mandates_page(
    request: Req,
    conn: Conn,
    c: str,
    m: str,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response[str]:
    year = await offset_year(rules_of(request), conn, c)
    found = await consent.list_mandates(conn, c, m, year)
    member = await setup.get_member(conn, c, m)
    return await _page(
        request,
        conn,
        c,
        m,
        "mandates.html",
        status=status,
        mandates=found,
        year=year,
        member=member,
        error=error,
        form=form or {},
        done=request.query_params.get("done"),
    )


@get("/me/mandates", opt=RESIDENT)
async def mandates(request: Req) -> Response[str]:
    """`GET …/mandates`: the mandates in force, with what each used this year."""
    c, m = _subject(request)
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        return await _mandates_page(request, conn, c, m)


@post("/me/mandates", opt=RESIDENT)
async def put_mandate(request: Req) -> Response[Any]:
    """`PUT …/mandates/{company}`: grants or replaces the company's mandate."""
    c, m = _subject(request)
    principal = principal_of(request)
    form = await request.form()
    async with db(request) as conn:
        behalf = await people.acting_for(conn, principal, c, m, "spend")
        try:
            company = _company(_text(form, "company") or "")
            data = _decode(
                MandateIn,
                {
                    "max_points_per_bill": _int(form, "per_bill"),
                    "max_points_per_year": _int(form, "per_year"),
                },
            )
            await consent.put_mandate(
                conn,
                c,
                m,
                company,
                data.max_points_per_bill,
                data.max_points_per_year,
                await offset_year(rules_of(request), conn, c),
                principal.key_id,
                behalf,
            )
        except DomainError as err:
            return await _mandates_page(
                request, conn, c, m, err.status, _message(request, err), dict(form)
            )
    return _after(request, m, "/app/me/mandates", "granted")


@post("/me/mandates/{company:str}/revoke", opt=RESIDENT)
async def revoke_mandate(request: Req, company: FromPath[str]) -> Response[Any]:
    """`DELETE …/mandates/{company}`, from a form."""
    c, m = _subject(request)
    principal = principal_of(request)
    async with db(request) as conn:
        behalf = await people.acting_for(conn, principal, c, m, "spend")
        try:
            year = await offset_year(rules_of(request), conn, c)
            await consent.revoke_mandate(
                conn, c, m, _company(company), year, principal.key_id, behalf
            )
        except DomainError as err:
            return await _mandates_page(request, conn, c, m, err.status, _message(request, err))
    return _after(request, m, "/app/me/mandates", "revoked")


# Proxies ---------------------------------------------------------------------


async def _proxies_page(
    request: Req,
    conn: Conn,
    c: str,
    m: str,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response[str]:
    me = principal_of(request).member
    assert me is not None
    granted = await people.proxies_of(conn, c, m)
    represented = await people.represented_by(conn, c, me)
    return await _page(
        request,
        conn,
        c,
        m,
        "proxies.html",
        status=status,
        proxies=granted.proxies,
        represented=represented.proxies,
        scopes=people.SCOPES,
        error=error,
        form=form or {},
        done=request.query_params.get("done"),
    )


@get("/me/proxies", opt=RESIDENT)
async def proxies(request: Req) -> Response[str]:
    """`GET …/proxies` (who may act for the member), and whom the resident acts for."""
    c, m = _subject(request)
    async with db(request) as conn:
        await people.acting_for(conn, principal_of(request), c, m, "read")
        return await _proxies_page(request, conn, c, m)


@post("/me/proxies", opt=RESIDENT)
async def grant_proxy(request: Req) -> Response[Any]:
    """`PUT …/proxies/{p}`: only the member's own resident, never a proxy."""
    c, m = _subject(request)
    principal = principal_of(request)
    form = await request.form()
    async with db(request) as conn:
        await people.only_itself(conn, principal, c, m, "grant proxies")
        try:
            proxy = _text(form, "proxy") or ""
            if not _ID.match(proxy):
                raise ValidationFailed("a member id must match [A-Za-z0-9._-]{1,64}")
            data = _decode(ProxyIn, {"scopes": [s for s in form.getall("scopes")]})
            await people.grant(conn, c, m, proxy, data.scopes, principal.key_id)
        except DomainError as err:
            return await _proxies_page(
                request, conn, c, m, err.status, _message(request, err), dict(form)
            )
    return _after(request, m, "/app/me/proxies", "granted")


@post("/me/proxies/{p:str}/revoke", opt=RESIDENT)
async def revoke_proxy(request: Req, p: FromPath[str]) -> Response[Any]:
    """`DELETE …/proxies/{p}`, from a form."""
    c, m = _subject(request)
    principal = principal_of(request)
    async with db(request) as conn:
        await people.only_itself(conn, principal, c, m, "revoke proxies")
        try:
            await people.revoke(conn, c, m, p, principal.key_id)
        except DomainError as err:
            return await _proxies_page(request, conn, c, m, err.status, _message(request, err))
    return _after(request, m, "/app/me/proxies", "revoked")


# Time bank -------------------------------------------------------------------


async def _time_page(
    request: Req,
    conn: Conn,
    c: str,
    m: str,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response[str]:
    """Minutes (balance, held, expiring), the member's volunteer hours and its
    minutes' entries (gifts in and out among them)."""
    bal = await lots.member_balance(conn, c, m, await rules_of(request).params(conn, c))
    cursor = request.query_params.get("cursor") or None
    logged = await hours.hours_page(
        conn,
        c,
        principal_of(request),
        status=None,
        team=None,
        member=m,
        cursor=cursor,
        limit=PAGE_SIZE,
    )
    entries = await reads.entries_page(
        conn, c, member_address(m, "minutes"), cursor=None, limit=PAGE_SIZE
    )
    return await _page(
        request,
        conn,
        c,
        m,
        "time.html",
        status=status,
        balance=bal,
        hours=logged,
        entries=entries,
        kinds=KINDS,
        error=error,
        form=form or {},
        op_id=_op_id("gift"),
        done=request.query_params.get("done"),
    )


@get("/me/time", opt=RESIDENT)
async def time_bank(request: Req) -> Response[str]:
    """The member's own volunteer hours, read with the time bank's `hours_page`
    limited to that member: the API lists hours for staff only, the page shows a
    resident (or its proxy with `read`) no one's hours but the member's."""
    c, m = _subject(request)
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        return await _time_page(request, conn, c, m)


@post("/me/time/give", opt=RESIDENT)
async def give_minutes(request: Req) -> Response[Any]:
    """`POST …/time-transfers` from the member: the form's `op_id` is the
    transaction's id, so a double submit is a replay."""
    c, m = _subject(request)
    form = await request.form()
    try:
        data = _decode(
            TimeTransferIn,
            {
                "id": _text(form, "op_id") or "",
                "from_member": m,
                "to_member": _text(form, "to_member") or "",
                "minutes": _int(form, "minutes"),
                "memo": _text(form, "memo"),
            },
        )
        await give_time(request, c, data)
    except DomainError as err:
        async with db(request) as conn:
            return await _time_page(
                request, conn, c, m, err.status, _message(request, err), dict(form)
            )
    return _after(request, m, "/app/me/time", "given")


HANDLERS: Final[list[Any]] = [
    balance,
    statement,
    spend_code_form,
    issue_spend_code,
    mandates,
    put_mandate,
    revoke_mandate,
    proxies,
    grant_proxy,
    revoke_proxy,
    time_bank,
    give_minutes,
]
