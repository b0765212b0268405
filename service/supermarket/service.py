"""Supermarket use cases: catalogue and redemptions (returns: returns.py).

A redemption (or a return) is one database transaction. Locks are always taken
in this order: the redemption row (returns), the basket's items in sku order, the
spend code consenting to a redemption (SPEC section 10), then the member's points
account (taken by the ledger's write, which checks
`redeemable`). Stock and points therefore change together or not at all, and no
two writers wait on each other in opposite orders.

Round trips are most of a redemption's cost, so it makes two statements between
BEGIN and COMMIT (SQL functions in sql/functions/supermarket.sql): one checks the member, locks
the items and looks up the id; the service prices the basket (model.py) and plans
the ledger write; the other writes the redemption, its lines, the stock and the
ledger's transaction. A new redemption is answered from what is already known.

A member of another community of the district (SPEC section 16) redeems at a
district-wide store the same way, in the same two statements: the second writes
the member's side in its own community (points to `interchange:<store community>`)
and the store's side here (from `interchange:<member community>` to the store),
with the spend code of the member's community (sql/functions/network.sql).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
import msgspec

from service import setup
from service.consent.service import code_refusal
from service.db import Conn, unit_of_work
from service.errors import IdempotencyConflict, InsufficientPoints, NotFound
from service.i18n import basket, system_reason
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, RuleParams, interchange_address, member_address
from service.rules.book import RuleBook
from service.supermarket import model
from service.supermarket import store as market_store
from service.supermarket.model import Line, StockItem
from service.supermarket.views import ItemOut, ItemPage, LineOut, RedemptionOut


class Away(msgspec.Struct, frozen=True, kw_only=True):
    """The member's side of a redemption or a return at a store of another community
    of the district: its community, the district, and that community's limits and
    language (of the reason on the member's statement)."""

    community: str
    district: str
    params: RuleParams
    language: str


# The limits and language of a community (the rule book's), for a member's side.
MemberSide = Callable[[Conn, str], Awaitable[tuple[RuleParams, str]]]


def member_side(book: RuleBook) -> MemberSide:
    """The limits and language of a community, from `book`."""

    async def of(conn: Conn, community: str) -> tuple[RuleParams, str]:
        return await book.params(conn, community), await book.language(conn, community)

    return of


class NewRedemption(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    store: str
    member: str
    items: dict[str, int]
    request_hash: bytes
    actor: str | None
    # The SHA-256 of the spend code consenting to it, used up by it; None when the
    # redemption needs no code (an operator's, consent by PIN, or consent: none).
    code_hash: bytes | None = None
    # A member of another community of the district (SPEC section 16).
    away: Away | None = None


async def put_item(
    conn: Conn, community: str, store: str, sku: str, name: str, points: int, stock: int
) -> tuple[ItemOut, bool]:
    """Creates or replaces a catalogue item; True when it is new."""
    row = await market_store.upsert_item(conn, community, store, sku, name, points, stock)
    values = {k: row[k] for k in ("sku", "name", "points", "stock", "updated_at")}
    return ItemOut(**values), bool(row["created"])


async def list_items(
    conn: Conn, community: str, store: str, cursor: str | None, limit: int
) -> ItemPage:
    """A store's items in sku order; the cursor is the last sku seen."""
    rows = await market_store.list_items(conn, community, store, cursor or "", limit + 1)
    items = [ItemOut(**dict(r)) for r in rows[:limit]]
    return ItemPage(
        store=store, items=items, next_cursor=items[-1].sku if len(rows) > limit else None
    )


def _redemption_out(row: asyncpg.Record, *, as_created: bool = False) -> RedemptionOut:
    """A stored redemption; `as_created`, as its creation answered (nothing returned)."""
    lines = msgspec.convert(row["lines"], list[LineOut])
    if as_created:
        lines = [msgspec.structs.replace(line, returned=0) for line in lines]
    return RedemptionOut(
        id=row["id"],
        store=row["store_id"],
        member=row["member_id"],
        points=row["points"],
        returned_points=0 if as_created else row["returned_points"],
        items=lines,
        transaction_id=model.tx_id(row["id"]),
        created_at=row["created_at"],
        member_community=row["member_community"],
    )


def _created_out(
    new: NewRedemption, lines: list[Line], points: int, created_at: datetime
) -> RedemptionOut:
    """A new redemption as `redemption_get` would read it back, from what is known."""
    items = [
        LineOut(sku=x.sku, name=x.name, qty=x.qty, points_each=x.points_each, returned=0)
        for x in lines
    ]
    return RedemptionOut(
        id=new.id,
        store=new.store,
        member=new.member,
        points=points,
        returned_points=0,
        items=items,
        transaction_id=model.tx_id(new.id),
        created_at=created_at,
        member_community=None if new.away is None else new.away.community,
    )


async def get_redemption(
    conn: Conn, community: str, redemption: str, store: str | None
) -> RedemptionOut:
    """One redemption; another store's do not exist for a store key."""
    row = await market_store.get_redemption(conn, community, redemption)
    if row is None or (store is not None and row["store_id"] != store):
        raise NotFound(f"no redemption {redemption!r} in community {community!r}")
    return _redemption_out(row)


def _redemption_tx(
    new: NewRedemption, lines: list[Line], points: int, language: str
) -> NewTransaction:
    goods = basket(language, ((x.name, x.qty) for x in lines))
    return model.points_tx(
        model.tx_id(new.id),
        member_address(new.member, "points"),
        f"store:{new.store}:redemptions",
        points,
        "redemption",
        system_reason(language, "redemption", store=new.store, basket=goods),
        new.actor,
        {"redemption": new.id, "store": new.store},
        new.request_hash,
    )


def _shelf(row: asyncpg.Record) -> dict[str, StockItem]:
    """The locked items `redemption_prepare` found, by sku."""
    columns = (row["skus"] or [], row["names"] or [], row["points"] or [], row["stocks"] or [])
    return {
        sku: StockItem(sku=sku, name=name, points=points, stock=stock)
        for sku, name, points, stock in zip(*columns, strict=True)
    }


async def _redeem(
    conn: Conn, community: str, new: NewRedemption, params: RuleParams, language: str
) -> RedemptionOut | None:
    """Takes the stock and the points in two statements (sql/functions/supermarket.sql);
    None when the id already exists."""
    # A member of another community is checked there, by its side's ledger write.
    member = new.member if new.away is None else None
    found = await market_store.prepare_redemption(
        conn, community, new.id, member, new.store, sorted(new.items)
    )
    if not found["member_found"]:
        raise NotFound(f"no member {new.member!r} in community {community!r}")
    if found["taken"]:
        return None
    lines = model.price(new.items, _shelf(found), new.store)
    points = model.total(lines)
    if new.away is not None:
        return await _redeem_away(conn, community, new, new.away, lines, points, params, language)
    tx = _redemption_tx(new, lines, points, language)
    row = await market_store.write_redemption(
        conn,
        community,
        new.id,
        new.request_hash,
        new.store,
        new.member,
        points,
        new.actor,
        lines,
        new.code_hash,
        ledger.write_document(tx, params),
    )
    if row["consent"] is not None:
        raise code_refusal(row["consent"], row["consent_max"], points)
    if not row["written"]:
        return None
    ledger.check_written(tx, row["outcome"], row["failure"])
    return _created_out(new, lines, points, row["created_at"])


async def _redeem_away(
    conn: Conn,
    community: str,
    new: NewRedemption,
    away: Away,
    lines: list[Line],
    points: int,
    params: RuleParams,
    language: str,
) -> RedemptionOut | None:
    """Statement 2 for a member of another community: both sides at once."""
    metadata = {"redemption": new.id, "store": new.store}
    member_tx = model.points_tx(
        model.away_tx_id(community, new.id),
        member_address(new.member, "points"),
        interchange_address(community, "points"),
        points,
        "redemption",
        system_reason(
            away.language,
            "redemption",
            store=f"{community}/{new.store}",
            basket=basket(away.language, ((x.name, x.qty) for x in lines)),
        ),
        new.actor,
        {**metadata, "store_community": community},
        new.request_hash,
    )
    store_tx = model.points_tx(
        model.tx_id(new.id),
        interchange_address(away.community, "points"),
        f"store:{new.store}:redemptions",
        points,
        "redemption",
        system_reason(
            language,
            "redemption",
            store=new.store,
            basket=basket(language, ((x.name, x.qty) for x in lines)),
        ),
        new.actor,
        {**metadata, "member": new.member, "member_community": away.community},
        new.request_hash,
    )
    row = await market_store.write_network_redemption(
        conn,
        community,
        away.community,
        away.district,
        new.id,
        new.request_hash,
        new.store,
        new.member,
        points,
        new.actor,
        lines,
        new.code_hash,
        ledger.write_document(member_tx, away.params),
        ledger.write_document(store_tx, params),
    )
    if row["consent"] is not None:
        raise code_refusal(row["consent"], row["consent_max"], points)
    if not row["written"]:
        return None
    check_sides(
        ((member_tx, row["member_outcome"]), (store_tx, row["store_outcome"])), row["failure"]
    )
    return _created_out(new, lines, points, row["created_at"])


def check_sides(
    sides: tuple[tuple[NewTransaction, str | None], ...], failure: dict[str, object] | None
) -> None:
    """Raises the refusal of whichever side of a change between two communities the
    ledger refused (`interchange_write` stops at the first; the other's outcome is
    then null), as `ledger.check_written` does for one."""
    for tx, outcome in sides:
        if outcome is not None and outcome != "created":
            ledger.check_written(tx, outcome, failure)
    for tx, outcome in sides:
        ledger.check_written(tx, outcome or "not_found", failure)


async def redeem(
    conn: Conn, community: str, new: NewRedemption, params: RuleParams, *, language: str
) -> tuple[RedemptionOut, bool]:
    """Exchanges points for goods once per id: stock and points change together or not at
    all. `language` is the community's, for the reason."""

    try:
        created = await unit_of_work(conn, lambda: _redeem(conn, community, new, params, language))
    except InsufficientPoints as err:  # a closed member's account: member_closed
        home = community if new.away is None else new.away.community
        raise await setup.explained(conn, home, err) from None
    if created is not None:
        return created, False
    # The id was taken: a replay answers as the original did, from what was stored.
    row = await market_store.get_redemption(conn, community, new.id)
    assert row is not None
    if bytes(row["request_hash"]) != new.request_hash:
        raise IdempotencyConflict(
            f"redemption {new.id!r} exists with a different request; use a new id"
        )
    return _redemption_out(row, as_created=True), True
