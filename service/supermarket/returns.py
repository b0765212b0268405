"""Returns of love-supermarket redemptions: points and stock go back together.

A return is one database transaction with the lock order of service.py: the
redemption's row, its items in sku order, then the member's points account (the
ledger's write). It makes two statements between BEGIN and COMMIT (SQL functions
of sql/functions/supermarket.sql): one locks the redemption and reads its lines and returns, the
other locks the items and writes everything back, the ledger's transaction
included. A new return is answered from what is already known.

The return of a redemption by a member of another community (SPEC section 16)
undoes both sides at once: in the member's community its lots come back, and here
the store gives back to `interchange:<member community>`.
"""

from __future__ import annotations

import asyncpg
import msgspec

from service.db import Conn, unit_of_work
from service.errors import IdempotencyConflict, InvalidState, NotFound, ValidationFailed
from service.i18n import system_reason
from service.ledger import service as ledger
from service.ledger.model import RuleParams, interchange_address, member_address
from service.network import service as network
from service.rules.book import RuleBook
from service.supermarket import model
from service.supermarket import service as market
from service.supermarket import store as market_store
from service.supermarket.model import Line
from service.supermarket.service import MemberSide, check_sides
from service.supermarket.views import ReturnLineOut, ReturnOut


class NewReturn(msgspec.Struct, frozen=True, kw_only=True):
    """A return of `items` (sku → qty; None: all that is left); `store` is the
    caller's scope (None for an operator), `id` the client's (None: numbered)."""

    redemption: str
    store: str | None
    id: str | None
    items: dict[str, int] | None
    request_hash: bytes
    actor: str | None


def _return_out(redemption: str, row: asyncpg.Record) -> ReturnOut:
    return ReturnOut(
        id=row["id"],
        redemption=redemption,
        items=msgspec.convert(row["items"], list[ReturnLineOut]),
        points=row["points"],
        transaction_id=model.return_tx_id(redemption, row["id"]),
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
    language: str,
    member_side: MemberSide,
) -> ReturnOut:
    store, redemption = owner["store_id"], new.redemption
    points = model.total(back)
    items = [ReturnLineOut(sku=x.sku, qty=x.qty, points=x.qty * x.points_each) for x in back]
    if owner["member_community"] is not None:
        return await _give_back_away(
            conn, community, new, return_id, back, items, owner, params, language, member_side
        )
    tx = model.points_tx(
        model.return_tx_id(redemption, return_id),
        f"store:{store}:redemptions",
        member_address(owner["member_id"], "points"),
        points,
        "redemption_return",
        system_reason(language, "redemption_return", store=store, redemption=redemption),
        new.actor,
        {"redemption": redemption, "return": return_id},
        new.request_hash,
        undoes=owner["tx_row"],
    )
    row = await market_store.write_return(
        conn,
        community,
        redemption,
        return_id,
        new.request_hash,
        store,
        back,
        items,
        points,
        new.actor,
        ledger.write_document(tx, params),
    )
    ledger.check_written(tx, row["outcome"], row["failure"])
    return ReturnOut(
        id=return_id,
        redemption=redemption,
        items=items,
        points=points,
        transaction_id=tx.client_id,
        created_at=row["created_at"],
    )


async def _give_back_away(
    conn: Conn,
    community: str,
    new: NewReturn,
    return_id: str,
    back: list[Line],
    items: list[ReturnLineOut],
    owner: asyncpg.Record,
    params: RuleParams,
    language: str,
    member_side: MemberSide,
) -> ReturnOut:
    """A return of a redemption by a member of another community: both sides, each
    undoing its side of the redemption."""
    store, redemption, away = owner["store_id"], new.redemption, owner["member_community"]
    district = await network.pair(conn, community, away)
    away_params, away_language = await member_side(conn, away)
    points = model.total(back)
    metadata = {"redemption": redemption, "return": return_id}
    member_tx = model.points_tx(
        model.away_return_tx_id(community, redemption, return_id),
        interchange_address(community, "points"),
        member_address(owner["member_id"], "points"),
        points,
        "redemption_return",
        system_reason(
            away_language,
            "redemption_return",
            store=f"{community}/{store}",
            redemption=redemption,
        ),
        new.actor,
        {**metadata, "store_community": community},
        new.request_hash,
        undoes=await network.tx_row_of(conn, away, model.away_tx_id(community, redemption)),
    )
    store_tx = model.points_tx(
        model.return_tx_id(redemption, return_id),
        f"store:{store}:redemptions",
        interchange_address(away, "points"),
        points,
        "redemption_return",
        system_reason(language, "redemption_return", store=store, redemption=redemption),
        new.actor,
        {**metadata, "member_community": away},
        new.request_hash,
        undoes=owner["tx_row"],
    )
    row = await market_store.write_network_return(
        conn,
        community,
        away,
        district,
        redemption,
        return_id,
        new.request_hash,
        store,
        back,
        items,
        points,
        new.actor,
        ledger.write_document(member_tx, away_params),
        ledger.write_document(store_tx, params),
    )
    check_sides(
        ((member_tx, row["member_outcome"]), (store_tx, row["store_outcome"])), row["failure"]
    )
    return ReturnOut(
        id=return_id,
        redemption=redemption,
        items=items,
        points=points,
        transaction_id=store_tx.client_id,
        created_at=row["created_at"],
    )


async def _return(
    conn: Conn,
    community: str,
    new: NewReturn,
    params: RuleParams,
    language: str,
    member_side: MemberSide,
) -> tuple[str, ReturnOut | None]:
    """The return's id, and the return made (None when that id was made before)."""
    owner = await market_store.prepare_return(conn, community, new.redemption, new.id)
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
    given = await _give_back(
        conn, community, new, return_id, back, owner, params, language, member_side
    )
    return return_id, given


async def return_items(
    conn: Conn,
    community: str,
    new: NewReturn,
    params: RuleParams,
    *,
    language: str,
    member_side: MemberSide | None = None,
) -> tuple[ReturnOut, bool]:
    """Gives back points and stock for some items (or all that are left). With a
    client id the return happens once (a retry is a replay). `language` is the
    community's, for the reason; `member_side` gives the member's community's limits
    and language for a redemption by a member of another one (default: the rule
    sets as stored)."""
    member_side = member_side or market.member_side(RuleBook())
    if new.items is not None and not new.items:
        raise ValidationFailed("items, when given, names at least one item")

    made, created = await unit_of_work(
        conn, lambda: _return(conn, community, new, params, language, member_side)
    )
    if created is not None:
        return created, False
    row = await market_store.get_return(conn, community, new.redemption, made)
    assert row is not None
    return _return_out(new.redemption, row), True
