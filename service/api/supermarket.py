"""Love-supermarket endpoints (tills and operators): catalogue, redemptions, returns."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream
from msgspec import Meta

from service.api.deps import (
    FromQueryInstant,
    ToQueryInstant,
    body,
    db,
    fingerprint,
    fingerprint_since,
    principal_of,
    rules_of,
    written,
)
from service.api.exports import ExportFormat, sheet_response, span
from service.api.openapi import json_body
from service.api.wire import Amount, ClientId, CommunityId, ConsentIn, Strict
from service.consent import service as consent
from service.errors import Forbidden, ValidationFailed
from service.exports import service as exports
from service.ledger.model import ID_PATTERN, MAX_AMOUNT
from service.network import service as network
from service.supermarket import model, returns, views
from service.supermarket import service as market

STORE: Final = frozenset({"operator", "store"})
Req = Request[Any, Any, Any]
_ID = re.compile(ID_PATTERN)
Qty = Annotated[int, Meta(ge=1, le=1_000_000)]
Stock = Annotated[int, Meta(ge=0, le=MAX_AMOUNT)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]


class ItemIn(Strict):
    name: Name
    points: Amount
    stock: Stock


class BasketItem(Strict):
    sku: ClientId
    qty: Qty


class RedemptionIn(Strict):
    id: ClientId
    store: ClientId
    member: ClientId
    items: Annotated[list[BasketItem], Meta(min_length=1, max_length=100)]
    # The member's consent, which a store key needs (SPEC section 10).
    consent: ConsentIn | None = None
    # The member's community, when it is another of the district and the store is
    # district-wide (SPEC section 16); its consent is given there.
    member_community: CommunityId | None = None


class ReturnIn(Strict):
    id: ClientId | None = None
    items: Annotated[list[BasketItem], Meta(min_length=1, max_length=100)] | None = None


def _store_scope(request: Req) -> str | None:
    principal = principal_of(request)
    return principal.store if principal.role == "store" else None


def _own_store(request: Req, store: str) -> str:
    """A store key acts only for its own store."""
    if not _ID.match(store):
        raise ValidationFailed("a store id must match [A-Za-z0-9._-]{1,64}")
    scope = _store_scope(request)
    if scope is not None and scope != store:
        raise Forbidden(f"this key acts only for store {scope!r}")
    return store


@put(
    "/v1/communities/{c:str}/stores/{s:str}/items/{sku:str}",
    opt={"roles": STORE},
    operation_class=json_body(ItemIn),
)
async def put_item(
    request: Req, c: FromPath[str], s: FromPath[str], sku: FromPath[str]
) -> Response[views.ItemOut]:
    """Creates (201) or replaces (200) an item: its name, price in points and stock."""
    _own_store(request, s)
    if not _ID.match(sku):
        raise ValidationFailed("a sku must match [A-Za-z0-9._-]{1,64}")
    data = await body(request, ItemIn)
    async with db(request) as conn:
        item, created = await market.put_item(conn, c, s, sku, data.name, data.points, data.stock)
    return Response(item, status_code=201 if created else 200)


@get("/v1/communities/{c:str}/stores/{s:str}/items", opt={"roles": STORE})
async def list_items(
    request: Req,
    c: FromPath[str],
    s: FromPath[str],
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> views.ItemPage:
    _own_store(request, s)
    async with db(request) as conn:
        return await market.list_items(conn, c, s, cursor, limit)


@post(
    "/v1/communities/{c:str}/redemptions",
    opt={"roles": STORE},
    operation_class=json_body(RedemptionIn),
)
async def create_redemption(request: Req, c: FromPath[str]) -> Response[views.RedemptionOut]:
    """Exchanges a member's points for goods: points and stock change together or not at all."""
    data = await body(request, RedemptionIn)
    return written(*await redeem(request, c, data))


async def redeem(request: Req, c: str, data: RedemptionIn) -> tuple[views.RedemptionOut, bool]:
    """What `POST …/redemptions` does with its body (the till's page calls it too):
    the redemption and whether it is a replay."""
    _own_store(request, data.store)
    principal = principal_of(request)
    book = rules_of(request)
    async with db(request) as conn:
        away = None
        home = c
        if data.member_community is not None:
            # A member of another community: its rule set, its consent (SPEC section 16).
            district = await network.pair(conn, c, data.member_community, data.store)
            home = data.member_community
            params, language = await market.member_side(book)(conn, home)
            away = market.Away(community=home, district=district, params=params, language=language)
        active = await book.active(conn, home)
        code_hash = None
        # An operator is trusted in its own community only: for a member of another
        # one it is a till like any other, and the member's community consents.
        role = "store" if away is not None and principal.role == "operator" else principal.role
        if consent.needed(role, active.rule_set.consent.redemption):
            code_hash = await consent.redemption_consent(conn, home, data.member, data.consent)
        new = market.NewRedemption(
            id=data.id,
            store=data.store,
            member=data.member,
            items=model.basket((i.sku, i.qty) for i in data.items),
            # The consent is not part of what a replay must repeat, and a PIN
            # must not be recoverable from the stored digest.
            request_hash=fingerprint_since(
                msgspec.structs.replace(data, consent=None), "member_community"
            ),
            actor=principal.key_id,
            code_hash=code_hash,
            away=away,
        )
        params = active.rule_set.to_params() if away is None else await book.params(conn, c)
        language = await book.language(conn, c)
        return await market.redeem(conn, c, new, params, language=language)


@get("/v1/communities/{c:str}/redemptions/{r:str}", opt={"roles": STORE})
async def get_redemption(request: Req, c: FromPath[str], r: FromPath[str]) -> views.RedemptionOut:
    async with db(request) as conn:
        return await market.get_redemption(conn, c, r, _store_scope(request))


@post(
    "/v1/communities/{c:str}/redemptions/{r:str}/return",
    opt={"roles": STORE},
    operation_class=json_body(ReturnIn, required=False),
)
async def return_redemption(
    request: Req, c: FromPath[str], r: FromPath[str]
) -> Response[views.ReturnOut]:
    """Returns some items (or, without `items`, all that are left): points and stock back."""
    raw = await request.body()
    data = await body(request, ReturnIn) if raw.strip() else ReturnIn()
    return written(*await give_back(request, c, r, data))


async def give_back(request: Req, c: str, r: str, data: ReturnIn) -> tuple[views.ReturnOut, bool]:
    """What `POST …/redemptions/{r}/return` does with its body (the till's page
    calls it too): the return and whether it is a replay."""
    wanted = None if data.items is None else model.basket((i.sku, i.qty) for i in data.items)
    new = returns.NewReturn(
        redemption=r,
        store=_store_scope(request),
        id=data.id,
        items=wanted,
        request_hash=fingerprint(data),
        actor=principal_of(request).key_id,
    )
    book = rules_of(request)
    async with db(request) as conn:
        params, language = await book.params(conn, c), await book.language(conn, c)
        return await returns.return_items(
            conn, c, new, params, language=language, member_side=market.member_side(book)
        )


@get("/v1/communities/{c:str}/redemptions/export", opt={"roles": STORE})
async def export_redemptions(
    request: Req,
    c: FromPath[str],
    start: FromQueryInstant = None,
    end: ToQueryInstant = None,
    store: Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
    fmt: ExportFormat = "csv",
) -> Response[bytes] | Stream:
    """A store's redemptions and returns made in [from, to) (at most 366 days), one
    row each, then their totals; a store key's own store, an operator's any (or,
    without `store`, every store)."""
    chosen = _own_store(request, store) if store is not None else _store_scope(request)
    selected = span(start, end)
    async with db(request) as conn:
        export = await exports.redemptions_sheet(conn, rules_of(request), c, chosen, selected, fmt)
    return sheet_response(export)


HANDLERS: Final = [
    put_item,
    list_items,
    create_redemption,
    get_redemption,
    return_redemption,
    export_redemptions,
]
