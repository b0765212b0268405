"""Supermarket use cases: catalogue, redemptions and returns.

A redemption is one database transaction. Locks are always taken in this order:
the redemption row (returns), the basket's items in sku order, then the member's
points account (taken by the ledger's write, which checks `redeemable`). Stock and
points therefore change together or not at all, and no two writers wait on each
other in opposite orders.

Round trips are most of a redemption's cost, so it makes two statements between
BEGIN and COMMIT (SQL functions of migration 0009): one checks the member, locks
the items and looks up the id; the service prices the basket (model.py) and plans
the ledger write; the other writes the redemption, its lines, the stock and the
ledger's transaction. A new redemption is answered from what is already known. A
return likewise: one statement locks the redemption and reads its lines and
returns, the other locks the items and writes everything back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.db import q, retrying
from service.errors import IdempotencyConflict, InvalidState, NotFound, ValidationFailed
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting, RuleParams, member_address
from service.ledger.store import Conn
from service.supermarket import model
from service.supermarket.model import Line, StockItem
from service.supermarket.views import (
    ItemOut,
    ItemPage,
    LineOut,
    RedemptionOut,
    ReturnLineOut,
    ReturnOut,
)


class NewRedemption(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    store: str
    member: str
    items: dict[str, int]
    request_hash: bytes
    actor: str | None


class NewReturn(msgspec.Struct, frozen=True, kw_only=True):
    """A return of `items` (sku → qty; None: all that is left); `store` is the
    caller's scope (None for an operator), `id` the client's (None: numbered)."""

    redemption: str
    store: str | None
    id: str | None
    items: dict[str, int] | None
    request_hash: bytes
    actor: str | None


def _tx_id(redemption: str) -> str:
    return f"redemption:{redemption}"


async def put_item(
    conn: Conn, community: str, store: str, sku: str, name: str, points: int, stock: int
) -> tuple[ItemOut, bool]:
    """Creates or replaces a catalogue item; True when it is new."""
    row = await conn.fetchrow(q("item_upsert"), community, store, sku, name, points, stock)
    assert row is not None
    values = {k: row[k] for k in ("sku", "name", "points", "stock", "updated_at")}
    return ItemOut(**values), bool(row["created"])


async def list_items(
    conn: Conn, community: str, store: str, cursor: str | None, limit: int
) -> ItemPage:
    """A store's items in sku order; the cursor is the last sku seen."""
    rows = await conn.fetch(q("item_list"), community, store, cursor or "", limit + 1)
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
        transaction_id=_tx_id(row["id"]),
        created_at=row["created_at"],
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
        transaction_id=_tx_id(new.id),
        created_at=created_at,
    )


async def get_redemption(
    conn: Conn, community: str, redemption: str, store: str | None
) -> RedemptionOut:
    """One redemption; another store's do not exist for a store key."""
    row = await conn.fetchrow(q("redemption_get"), community, redemption)
    if row is None or (store is not None and row["store_id"] != store):
        raise NotFound(f"no redemption {redemption!r} in community {community!r}")
    return _redemption_out(row)


def _points_tx(
    client_id: str,
    source: str,
    destination: str,
    amount: int,
    kind: str,
    reason: str,
    actor: str | None,
    metadata: dict[str, Any],
    request_hash: bytes,
) -> NewTransaction:
    posting = Posting(source=source, destination=destination, asset="points", amount=amount)
    return NewTransaction(
        client_id=client_id,
        postings=(posting,),
        request_hash=request_hash,
        kind=kind,
        reason=reason,
        actor=actor,
        metadata=metadata,
    )


def _redemption_tx(new: NewRedemption, lines: list[Line], points: int) -> NewTransaction:
    basket = ", ".join(f"{x.qty} × {x.name}" for x in lines)
    return _points_tx(
        _tx_id(new.id),
        member_address(new.member, "points"),
        f"store:{new.store}:redemptions",
        points,
        "redemption",
        f"love supermarket {new.store}: {basket}",
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
    conn: Conn, community: str, new: NewRedemption, params: RuleParams
) -> RedemptionOut | None:
    """Takes the stock and the points in two statements (0009); None when the id
    already exists."""
    found = await conn.fetchrow(
        q("redemption_prepare"), community, new.id, new.member, new.store, sorted(new.items)
    )
    assert found is not None
    if not found["member_found"]:
        raise NotFound(f"no member {new.member!r} in community {community!r}")
    if found["taken"]:
        return None
    lines = model.price(new.items, _shelf(found), new.store)
    points = model.total(lines)
    tx = _redemption_tx(new, lines, points)
    row = await conn.fetchrow(
        q("redemption_write"),
        community,
        new.id,
        new.request_hash,
        new.store,
        new.member,
        points,
        new.actor,
        [x.sku for x in lines],
        [x.name for x in lines],
        [x.qty for x in lines],
        [x.points_each for x in lines],
        ledger.write_document(tx, params),
    )
    assert row is not None
    if not row["written"]:
        return None
    ledger.check_written(tx, row["outcome"], row["failure"])
    return _created_out(new, lines, points, row["created_at"])


async def redeem(
    conn: Conn, community: str, new: NewRedemption, params: RuleParams
) -> tuple[RedemptionOut, bool]:
    """Exchanges points for goods once per id: stock and points change together or not at all."""

    async def attempt() -> RedemptionOut | None:
        async with conn.transaction():
            return await _redeem(conn, community, new, params)

    created = await retrying(attempt)
    if created is not None:
        return created, False
    # The id was taken: a replay answers as the original did, from what was stored.
    row = await conn.fetchrow(q("redemption_get"), community, new.id)
    assert row is not None
    if bytes(row["request_hash"]) != new.request_hash:
        raise IdempotencyConflict(
            f"redemption {new.id!r} exists with a different request; use a new id"
        )
    return _redemption_out(row, as_created=True), True


def _return_tx_id(redemption: str, return_id: str) -> str:
    return f"{_tx_id(redemption)}:return:{return_id}"


def _return_out(redemption: str, row: asyncpg.Record) -> ReturnOut:
    return ReturnOut(
        id=row["id"],
        redemption=redemption,
        items=msgspec.convert(row["items"], list[ReturnLineOut]),
        points=row["points"],
        transaction_id=_return_tx_id(redemption, row["id"]),
        created_at=row["created_at"],
    )


async def _give_back(
    conn: Conn,
    community: str,
    new: NewReturn,
    return_id: str,
    back: list[Line],
    owner: asyncpg.Record,
    params: RuleParams,
) -> ReturnOut:
    store, redemption = owner["store_id"], new.redemption
    points = model.total(back)
    tx = _points_tx(
        _return_tx_id(redemption, return_id),
        f"store:{store}:redemptions",
        member_address(owner["member_id"], "points"),
        points,
        "redemption_return",
        f"love supermarket {store}: return of redemption {redemption}",
        new.actor,
        {"redemption": redemption, "return": return_id},
        new.request_hash,
    )
    items = [ReturnLineOut(sku=x.sku, qty=x.qty, points=x.qty * x.points_each) for x in back]
    row = await conn.fetchrow(
        q("redemption_return_write"),
        community,
        redemption,
        return_id,
        new.request_hash,
        store,
        [x.sku for x in back],
        [x.qty for x in back],
        items,
        points,
        new.actor,
        ledger.write_document(tx, params),
    )
    assert row is not None
    ledger.check_written(tx, row["outcome"], row["failure"])
    return ReturnOut(
        id=return_id,
        redemption=redemption,
        items=items,
        points=points,
        transaction_id=tx.client_id,
        created_at=row["created_at"],
    )


async def _return(
    conn: Conn, community: str, new: NewReturn, params: RuleParams
) -> tuple[str, ReturnOut | None]:
    """The return's id, and the return made (None when that id was made before)."""
    owner = await conn.fetchrow(q("redemption_return_prepare"), community, new.redemption, new.id)
    assert owner is not None
    if owner["store_id"] is None or (new.store is not None and owner["store_id"] != new.store):
        raise NotFound(f"no redemption {new.redemption!r} in community {community!r}")
    if new.id is not None and owner["return_hash"] is not None:
        if bytes(owner["return_hash"]) != new.request_hash:
            raise IdempotencyConflict(f"return {new.id!r} exists with different items")
        return new.id, None
    back = model.returnable(msgspec.convert(owner["lines"], list[Line]), new.items)
    if not back:
        raise InvalidState(f"every item of redemption {new.redemption!r} is already back")
    return_id = new.id if new.id is not None else f"auto:{owner['return_count'] + 1}"
    return return_id, await _give_back(conn, community, new, return_id, back, owner, params)


async def return_items(
    conn: Conn, community: str, new: NewReturn, params: RuleParams
) -> tuple[ReturnOut, bool]:
    """Gives back points and stock for some items (or all that are left). With a
    client id the return happens once (a retry is a replay)."""
    if new.items is not None and not new.items:
        raise ValidationFailed("items, when given, names at least one item")

    async def attempt() -> tuple[str, ReturnOut | None]:
        async with conn.transaction():
            return await _return(conn, community, new, params)

    made, created = await retrying(attempt)
    if created is not None:
        return created, False
    row = await conn.fetchrow(q("redemption_return_get"), community, new.redemption, made)
    assert row is not None
    return _return_out(new.redemption, row), True
