"""The till's pages (SPEC section 14): a love-supermarket volunteer finds the
member by the spend code the resident shows (scanned or typed), fills a basket
from the store's catalogue, redeems, prints the receipt and takes returns.

Signed in with a store key (`principal.store`, `principal.community`). Every
write is the API's own: the sale calls `service.api.supermarket.redeem` with the
body `POST …/redemptions` would get (`consent: {spend_code}`), a return calls
`give_back` as `POST …/redemptions/{r}/return` does, each under a client id the
page rendered into its form, so a double tap is a replay and never a second sale.

The member: a spend code is bound to one member, and the redemption's body must
name it. A volunteer scans one thing, so the till learns the member from the
code (`consent.spend_code_holder`: an unused, unexpired code this store may
take, found by its digest, not used up). Failed look-ups count against the
address as failed sign-ins do (service/ratelimit.py).

A district-wide store (SPEC section 16) also serves the residents of the other
communities of its district: a code not found in the till's own community is
looked up among those (`consent.spend_code_holder_elsewhere`, one query by the
code's digest; a store-limited code of another community never matches), and
the basket names the member with their community's name. A code of a community
outside the district, or at a store that serves its own community only, is
refused as an unknown code is. The sale then calls `redeem` with
`member_community`, which writes both communities' sides at once; a return is
`give_back` as for any sale (the redemption knows whose member it was).

The code and the member it was found for (and their community, if another one)
travel from the look-up to the sale in hidden fields of the basket form, back to
the browser that typed the code (pages are `no-store`); the code is never in a
URL, and it is good for one sale of at most its ceiling within minutes. The
redemption checks the code against the member again (in the member's
community), under the code's lock, so an edited form gets `consent_required`.
The sale is not looked up again before it is made: the same form sent twice
must reach the redemption to be answered as a replay.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect

from service import setup
from service.api.deps import address_of, db, rules_of
from service.api.supermarket import RedemptionIn, ReturnIn, give_back, redeem
from service.consent import service as consent
from service.db import Conn
from service.errors import (
    ConsentRequired,
    DomainError,
    Forbidden,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidState,
    MemberClosed,
    NotFound,
    OutOfStock,
    RateLimited,
    ValidationFailed,
)
from service.exports import store as movements
from service.i18n import basket
from service.network import service as network
from service.network.service import OutsideDistrict
from service.ratelimit import Limits
from service.supermarket import service as market
from service.supermarket.views import ItemOut, RedemptionOut
from service.web.i18n import HTML_LANG, Translator
from service.web.render import html

Req = Request[Any, Any, Any]
TILL: Final = {"roles": frozenset({"store"})}
QTY: Final = "qty."
_PAGE: Final = 500
_MAX_QTY: Final = 1_000_000


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """What the volunteer reads when a sale or a return is refused."""

    title: str
    detail: str | None = None


def _till(request: Req) -> tuple[str, str]:
    """The community and the store of the till's key."""
    principal = request.state.principal
    if principal.community is None or principal.store is None:
        raise Forbidden("the till's pages are for a store key")
    return principal.community, principal.store


def _op_id(prefix: str) -> str:
    """A fresh client id for one form: sending it twice is a replay."""
    return f"{prefix}-{secrets.token_hex(8)}"


async def _local_zone(request: Req, conn: Conn, community: str) -> ZoneInfo:
    zone = ZoneInfo(await rules_of(request).timezone(conn, community))
    request.state.tz = zone
    return zone


async def _catalogue(conn: Conn, community: str, store: str) -> list[ItemOut]:
    """Every item of the store, in sku order (the API's list, page by page)."""
    items: list[ItemOut] = []
    cursor: str | None = None
    while True:
        page = await market.list_items(conn, community, store, cursor, _PAGE)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def _form(request: Req) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _quantities(form: dict[str, str]) -> dict[str, int]:
    """sku → qty from the form's `qty.<sku>` fields; blanks and zeros are left out."""
    wanted: dict[str, int] = {}
    for name, value in form.items():
        text = value.strip()
        if not name.startswith(QTY) or not text:
            continue
        # ASCII digits only: int() also reads "1_0" as 10, "+1", and other
        # scripts' digits, where the basket's script (parseInt) counts otherwise.
        if not (text.isascii() and text.isdigit()) or len(text) > 15:
            raise ValidationFailed(f"{name} must be a whole number")
        qty = int(text)
        if not 0 <= qty <= _MAX_QTY:
            raise ValidationFailed(f"{name} must be between 0 and {_MAX_QTY}")
        if qty:
            wanted[name[len(QTY) :]] = qty
    return wanted


async def _neighbours(conn: Conn, community: str, store: str) -> list[str]:
    """The other communities of the district whose residents `store` serves: none
    unless the store is district-wide and its community is in a district."""
    try:
        if not (await network.get_store(conn, community, store)).district_wide:
            return []
    except NotFound:  # a store known only by its catalogue serves its own community
        return []
    here = await setup.get_community(conn, community)
    if here.district is None:
        return []
    district = await network.get_district(conn, here.district)
    return [c for c in district.communities if c != community]


async def _holder(
    request: Req, conn: Conn, community: str, store: str, code: str
) -> consent.SpendCodeHolder:
    """Whom the code stands for, in the till's community or else (at a district-wide
    store) in another of its district; a failed look-up counts as a failed sign-in
    does, once, and is answered alike wherever the code was not found."""
    limits: Limits = request.app.state.limits
    address = address_of(request.scope)
    limits.admit(address, None)
    try:
        try:
            return await consent.spend_code_holder(conn, community, code, store)
        except ConsentRequired:
            others = await _neighbours(conn, community, store)
            if not others:
                raise
            return await consent.spend_code_holder_elsewhere(conn, others, code)
    except ConsentRequired:
        limits.failed(address, None)
        raise


async def _community_names(conn: Conn, communities: set[str | None]) -> dict[str, str]:
    """id → name of the members' other communities a page shows."""
    return {c: (await setup.get_community(conn, c)).name for c in sorted(filter(None, communities))}


def who(member: str, community: str | None, names: dict[str, str]) -> str:
    """The member as the till shows them: with their community's name when it is
    another one of the district ("m-1 · 江汉一")."""
    if community is None:
        return member
    return f"{member} · {names.get(community, community)}"


def refusal(t: Translator, err: DomainError, names: dict[str, str]) -> Refusal:
    """A refusal in the words of the till (`names`: sku → item name)."""
    extra = err.extra
    if isinstance(err, ConsentRequired):
        reason = f"till.consent.{extra.get('reason')}"
        return Refusal(
            title=t("till.refusal.consent_required"),
            detail=t(reason) if t.has(reason) else None,
        )
    if isinstance(err, InsufficientPoints):
        short = int(extra.get("requested", 0)) - int(extra.get("available", 0))
        return Refusal(title=t("till.refusal.insufficient_points", short=f"{short:,}"))
    if isinstance(err, OutOfStock):
        sku = str(extra.get("sku", ""))
        left = int(extra.get("available", 0))
        return Refusal(title=t("till.refusal.out_of_stock", name=names.get(sku, sku), left=left))
    if isinstance(err, MemberClosed):
        return Refusal(title=t("till.refusal.member_closed"))
    if isinstance(err, OutsideDistrict):
        return Refusal(
            title=t.refusal(err.code, err.detail, "till.refusal"),
            detail=t("till.refusal.outside_district_help"),
        )
    if isinstance(err, NotFound):
        return Refusal(title=t("till.refusal.no_item"))
    if isinstance(err, IdempotencyConflict):
        return Refusal(title=t("till.refusal.already_done"))
    if isinstance(err, RateLimited):
        return Refusal(title=t("error.rate_limited"))
    if isinstance(err, InvalidState) and "returnable" in extra:
        sku = str(extra.get("sku", ""))
        left = int(extra["returnable"])
        return Refusal(title=t("till.refusal.return_too_many", name=names.get(sku, sku), left=left))
    if isinstance(err, InvalidState):
        return Refusal(title=t("till.refusal.all_back"))
    return Refusal(title=t("till.refusal.invalid"))


# What a sale or a return may be refused for, shown on its own page; anything
# else is unexpected and gets the app's error page.
_SALE_REFUSALS: Final = (
    ConsentRequired,
    InsufficientPoints,
    OutOfStock,
    MemberClosed,
    NotFound,
    IdempotencyConflict,
    ValidationFailed,
    RateLimited,
)
_RETURN_REFUSALS: Final = (
    InvalidState,
    ValidationFailed,
    IdempotencyConflict,
    RateLimited,
    OutsideDistrict,
)


def _scan_page(
    request: Req,
    status: int = 200,
    refused: Refusal | None = None,
    quantities: dict[str, int] | None = None,
) -> Response[str]:
    return html(
        request,
        "till/scan.html",
        status=status,
        nav="sale",
        step=1,
        refusal=refused,
        quantities=quantities or {},
    )


def _basket_page(
    request: Req,
    holder: consent.SpendCodeHolder,
    member: str,
    code: str,
    items: list[ItemOut],
    quantities: dict[str, int],
    op_id: str,
    status: int = 200,
    refused: Refusal | None = None,
) -> Response[str]:
    prices = {item.sku: item.points for item in items}
    total = sum(prices.get(sku, 0) * qty for sku, qty in quantities.items())
    return html(
        request,
        "till/basket.html",
        status=status,
        nav="sale",
        step=2,
        holder=holder,
        member=member,
        code=code,
        items=items,
        quantities=quantities,
        total=total,
        op_id=op_id,
        refusal=refused,
    )


@get("/till", opt=TILL)
async def sale_start(request: Req) -> Response[str]:
    """Step 1: the spend code, scanned with the camera or typed."""
    _till(request)
    return _scan_page(request)


@post("/till/code", opt=TILL)
async def find_member(request: Req) -> Response[str]:
    """Step 2: the member the code stands for, and the basket to fill (a page, not
    a redirect: the code must not go into a URL)."""
    community, store = _till(request)
    form = await _form(request)
    code = form.get("code", "").strip()
    try:
        quantities = _quantities(form)
    except ValidationFailed:
        quantities = {}
    async with db(request) as conn:
        await _local_zone(request, conn, community)
        try:
            holder = await _holder(request, conn, community, store, code)
        except (ConsentRequired, RateLimited) as err:
            return _scan_page(request, err.status, refusal(request.state.t, err, {}), quantities)
        names = await _community_names(conn, {holder.community})
        items = await _catalogue(conn, community, store)
    on_shelf = {i.sku for i in items if i.stock > 0}
    kept = {sku: qty for sku, qty in quantities.items() if sku in on_shelf}
    member = who(holder.member, holder.community, names)
    return _basket_page(request, holder, member, code, items, kept, _op_id("till"))


async def _basket_again(
    request: Req,
    community: str,
    store: str,
    code: str,
    quantities: dict[str, int],
    op_id: str,
    status: int,
    why: Refusal | DomainError,
) -> Response[str]:
    """The basket again, as it was sent, with why it was refused (nothing changed);
    the scan page if the code can no longer be used."""
    async with db(request) as conn:
        await _local_zone(request, conn, community)
        try:
            holder = await _holder(request, conn, community, store, code)
        except (ConsentRequired, RateLimited) as err:
            return _scan_page(request, err.status, refusal(request.state.t, err, {}), quantities)
        names = await _community_names(conn, {holder.community})
        items = await _catalogue(conn, community, store)
    if isinstance(why, DomainError):
        why = refusal(request.state.t, why, {i.sku: i.name for i in items})
    member = who(holder.member, holder.community, names)
    return _basket_page(request, holder, member, code, items, quantities, op_id, status, why)


@post("/till/sale", opt=TILL)
async def sell(request: Req) -> Response[Any]:
    """Step 3: the redemption, exactly as `POST …/redemptions` makes it (for the
    member the code was found to stand for); then the receipt. The same form sent
    twice is a replay and shows the same receipt."""
    community, store = _till(request)
    form = await _form(request)
    t: Translator = request.state.t
    code = form.get("code", "").strip()
    op_id = form.get("op_id", "") or _op_id("till")
    again = partial(_basket_again, request, community, store, code)
    try:
        quantities = _quantities(form)
    except ValidationFailed as err:
        return await again({}, op_id, err.status, err)
    if not quantities:
        return await again({}, op_id, 422, Refusal(title=t("till.refusal.empty")))
    body: dict[str, Any] = {
        "id": op_id,
        "store": store,
        "member": form.get("member", ""),
        "items": [{"sku": s, "qty": q} for s, q in sorted(quantities.items())],
        "consent": {"spend_code": code},
    }
    # A member of another community of the district: the community the look-up
    # found the code in (the redemption checks the code there again).
    if member_community := form.get("member_community", "").strip():
        body["member_community"] = member_community
    try:
        data = msgspec.convert(body, RedemptionIn, strict=True)
    except msgspec.ValidationError:
        return await again(quantities, op_id, 422, Refusal(title=t("till.refusal.invalid")))
    limits: Limits = request.app.state.limits
    address = address_of(request.scope)
    try:
        limits.admit(address, None)
        done, _ = await redeem(request, community, data)
    except ConsentRequired as err:
        # Used, expired, wrong: the resident shows a new code; the basket is kept.
        limits.failed(address, None)
        return _scan_page(request, err.status, refusal(t, err, {}), quantities)
    except (RateLimited, OutsideDistrict) as err:
        # OutsideDistrict: the store stopped serving the district since the look-up.
        return _scan_page(request, err.status, refusal(t, err, {}), quantities)
    except _SALE_REFUSALS as err:
        fresh = _op_id("till") if isinstance(err, IdempotencyConflict) else op_id
        return await again(quantities, fresh, err.status, err)
    return Redirect(f"/app/till/receipts/{done.id}", status_code=303)


def _returnable(redemption: RedemptionOut) -> list[tuple[str, str, int]]:
    """(sku, name, qty left) of each line that can still come back."""
    return [(x.sku, x.name, x.qty - x.returned) for x in redemption.items if x.qty > x.returned]


def _receipt_page(
    request: Req,
    redemption: RedemptionOut,
    names: dict[str, str],
    status: int = 200,
    refused: Refusal | None = None,
    notice: str | None = None,
) -> Response[str]:
    return html(
        request,
        "till/receipt.html",
        status=status,
        nav="receipt",
        step=3,
        r=redemption,
        member=who(redemption.member, redemption.member_community, names),
        returnable=_returnable(redemption),
        op_id=_op_id("back"),
        refusal=refused,
        notice=notice,
    )


@get("/till/receipts/{r:str}", opt=TILL)
async def receipt(request: Req, r: FromPath[str]) -> Response[str]:
    """A sale's receipt (printable), with what has come back and the return form."""
    community, store = _till(request)
    async with db(request) as conn:
        await _local_zone(request, conn, community)
        redemption = await market.get_redemption(conn, community, r, store)
        names = await _community_names(conn, {redemption.member_community})
    t: Translator = request.state.t
    notice = t("till.receipt.returned") if request.query_params.get("done") == "return" else None
    return _receipt_page(request, redemption, names, notice=notice)


async def _receipt_again(
    request: Req, community: str, store: str, r: str, status: int, why: Refusal | DomainError
) -> Response[str]:
    """The receipt again, with why the return was refused (nothing changed)."""
    async with db(request) as conn:
        await _local_zone(request, conn, community)
        redemption = await market.get_redemption(conn, community, r, store)
        names = await _community_names(conn, {redemption.member_community})
    if isinstance(why, DomainError):
        why = refusal(request.state.t, why, {x.sku: x.name for x in redemption.items})
    return _receipt_page(request, redemption, names, status, why)


@post("/till/receipts/{r:str}/return", opt=TILL)
async def take_back(request: Req, r: FromPath[str]) -> Response[Any]:
    """Returns some of a sale, as `POST …/redemptions/{r}/return` does."""
    community, store = _till(request)
    form = await _form(request)
    data: ReturnIn | None = None
    try:
        wanted = _quantities(form)
        if wanted:
            body = {
                "id": form.get("op_id", ""),
                "items": [{"sku": s, "qty": q} for s, q in sorted(wanted.items())],
            }
            data = msgspec.convert(body, ReturnIn, strict=True)
    except (ValidationFailed, msgspec.ValidationError):
        data = None
    if data is None:
        empty = Refusal(title=request.state.t("till.refusal.return_empty"))
        return await _receipt_again(request, community, store, r, 422, empty)
    try:
        await give_back(request, community, r, data)
    except _RETURN_REFUSALS as err:
        return await _receipt_again(request, community, store, r, err.status, err)
    return Redirect(f"/app/till/receipts/{r}?done=return", status_code=303)


@get("/till/today", opt=TILL)
async def today(request: Req) -> Response[str]:
    """Today's redemptions and returns at this store (the rows of the API's export)."""
    community, store = _till(request)
    async with db(request) as conn:
        zone = await _local_zone(request, conn, community)
        now = datetime.now(zone)
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        rows = []
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for page in movements.movements(
                conn, community, store, start, start + timedelta(days=1)
            ):
                rows.extend(page)
        names = await _community_names(conn, {m.member_community for m in rows})
    t: Translator = request.state.t
    rows.reverse()  # newest first
    sold = [m for m in rows if m.kind == "redemption"]
    back = [m for m in rows if m.kind == "return"]
    return html(
        request,
        "till/today.html",
        nav="today",
        day=start,
        rows=[
            (
                m,
                who(m.member, m.member_community, names),
                basket(HTML_LANG[t.lang], m.goods),
                m.created_at.astimezone(zone).strftime("%H:%M"),
            )
            for m in rows
        ],
        sales=len(sold),
        sold_points=sum(m.points for m in sold),
        returned_points=sum(m.points for m in back),
    )


HANDLERS: Final[list[Any]] = [sale_start, find_member, sell, receipt, take_back, today]
