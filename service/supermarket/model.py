"""Pure supermarket rules: pricing a basket against locked stock, and what a return gives back.

A basket is checked in sku order, and the first problem is reported: an unknown sku
(404 `not_found`), then too little stock (409 `out_of_stock`); points are the
ledger's check, made after. A return never gives back more than was bought less
what was already returned. Both move points by one ledger transaction each, with
client ids `redemption:<id>` and `redemption:<id>:return:<return id>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from service.errors import InvalidState, NotFound, OutOfStock, ValidationFailed
from service.ledger.model import NewTransaction, Posting


class Line(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    name: str
    qty: int
    points_each: int
    returned: int = 0


class StockItem(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    name: str
    points: int
    stock: int


def basket(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """sku → qty; naming a sku twice is a validation error (say it once, with its qty)."""
    found: dict[str, int] = {}
    for sku, qty in items:
        if sku in found:
            raise ValidationFailed(f"sku {sku!r} appears twice; give it once with the total qty")
        found[sku] = qty
    return found


def price(wanted: Mapping[str, int], stock: Mapping[str, StockItem], store: str) -> list[Line]:
    """The lines of a redemption at today's prices, or the first sku that cannot be had."""
    lines: list[Line] = []
    for sku in sorted(wanted):
        item = stock.get(sku)
        if item is None:
            raise NotFound(f"store {store!r} has no item {sku!r}", sku=sku)
        if item.stock < wanted[sku]:
            raise OutOfStock(
                f"store {store!r} has {item.stock} of {sku!r}, not {wanted[sku]}",
                sku=sku,
                available=item.stock,
                requested=wanted[sku],
            )
        lines.append(Line(sku=sku, name=item.name, qty=wanted[sku], points_each=item.points))
    return lines


def total(lines: Iterable[Line]) -> int:
    return sum(line.qty * line.points_each for line in lines)


def returnable(lines: list[Line], wanted: Mapping[str, int] | None) -> list[Line]:
    """The lines (with the qty going back) of a return; everything left when `wanted` is None."""
    by_sku = {line.sku: line for line in lines}
    if wanted is None:
        return [
            msgspec.structs.replace(line, qty=line.qty - line.returned, returned=0)
            for line in lines
            if line.qty > line.returned
        ]
    back: list[Line] = []
    for sku in sorted(wanted):
        line = by_sku.get(sku)
        if line is None:
            raise ValidationFailed(f"sku {sku!r} is not in this redemption", sku=sku)
        left = line.qty - line.returned
        if wanted[sku] > left:
            raise InvalidState(
                f"only {left} of {sku!r} can still be returned, not {wanted[sku]}",
                sku=sku,
                returnable=left,
                requested=wanted[sku],
            )
        back.append(msgspec.structs.replace(line, qty=wanted[sku], returned=0))
    return back


def tx_id(redemption: str) -> str:
    """The client id of a redemption's ledger transaction."""
    return f"redemption:{redemption}"


def return_tx_id(redemption: str, return_id: str) -> str:
    return f"{tx_id(redemption)}:return:{return_id}"


def away_tx_id(store_community: str, redemption: str) -> str:
    """The member's side of a redemption at another community's store, in the
    member's community (ids have no ':', so it cannot meet a redemption of its own)."""
    return f"redemption:{store_community}:{redemption}"


def away_return_tx_id(store_community: str, redemption: str, return_id: str) -> str:
    return f"redemption:{store_community}:{redemption}:return:{return_id}"


def points_tx(
    client_id: str,
    source: str,
    destination: str,
    amount: int,
    kind: str,
    reason: str,
    actor: str | None,
    metadata: dict[str, Any],
    request_hash: bytes,
    undoes: int | None = None,
) -> NewTransaction:
    """The ledger transaction of a redemption or a return: one posting of points."""
    posting = Posting(source=source, destination=destination, asset="points", amount=amount)
    return NewTransaction(
        client_id=client_id,
        postings=(posting,),
        request_hash=request_hash,
        kind=kind,
        reason=reason,
        actor=actor,
        metadata=metadata,
        undoes=undoes,
    )
