"""Pure: a store's sheet of redemptions and returns, and its totals.

One row per redemption (points taken, positive) and one per return (points given
back, negative), so the points column sums to the net; the totals are counted here
from the very rows written, so the sheet always agrees with itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from service.exports.sheet import TOTAL_COLUMNS, Cell, local_time, words
from service.i18n import basket

Kind = Literal["redemption", "return"]


class Movement(msgspec.Struct, frozen=True, kw_only=True):
    """A redemption or a return, as the export query reads it."""

    kind: Kind
    redemption: str
    return_id: str | None
    store: str
    member: str
    points: int
    created_at: datetime
    goods: Sequence[tuple[str, int]]  # (name, qty), in sku order
    # The member's community when it is another one of the district (SPEC section 16).
    member_community: str | None = None


class Totals(msgspec.Struct, kw_only=True):
    redemptions: int = 0
    redeemed_points: int = 0
    returns: int = 0
    returned_points: int = 0

    def add(self, movement: Movement) -> None:
        if movement.kind == "redemption":
            self.redemptions += 1
            self.redeemed_points += movement.points
        else:
            self.returns += 1
            self.returned_points += movement.points


COLUMNS: Final = {
    "kind": ("类型", "kind"),
    "redemption": ("兑换单号", "redemption id"),
    "return": ("退货单号", "return id"),
    "store": ("门店", "store"),
    "member": ("居民", "member"),
    "goods": ("商品", "goods"),
    "points": ("积分", "points"),
    "created_at": ("时间", "time"),
}
KINDS: Final = {
    "redemption": ("兑换", "redemption"),
    "return": ("退货", "return"),
}
TOTALS: Final = {
    "redemption": ("兑换", "redemptions"),
    "return": ("退货", "returns"),
    "net": ("净额", "net"),
}


def header(language: str) -> list[Cell]:
    return list(words(language, COLUMNS).values())


def row(movement: Movement, language: str, tz: ZoneInfo) -> list[Cell]:
    sign = 1 if movement.kind == "redemption" else -1
    return [
        words(language, KINDS)[movement.kind],
        movement.redemption,
        movement.return_id,
        movement.store,
        movement.member,
        basket(language, movement.goods),
        sign * movement.points,
        local_time(movement.created_at, tz),
    ]


def totals(done: Totals, language: str) -> list[list[Cell]]:
    """A blank row, the totals' header (count and points), then redemptions,
    returns and the net."""
    names = words(language, TOTAL_COLUMNS)
    label = words(language, TOTALS)
    return [
        [],
        [names["total"], names["count"], names["points"]],
        [label["redemption"], done.redemptions, done.redeemed_points],
        [label["return"], done.returns, -done.returned_points],
        [label["net"], None, done.redeemed_points - done.returned_points],
    ]
