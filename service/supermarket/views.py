"""How catalogue items, redemptions and returns look to clients."""

from __future__ import annotations

from datetime import datetime

import msgspec


class ItemOut(msgspec.Struct, kw_only=True):
    sku: str
    name: str
    points: int
    stock: int
    updated_at: datetime


class ItemPage(msgspec.Struct, kw_only=True):
    store: str
    items: list[ItemOut]
    next_cursor: str | None


class LineOut(msgspec.Struct, kw_only=True):
    sku: str
    name: str
    qty: int
    points_each: int
    returned: int


class RedemptionOut(msgspec.Struct, kw_only=True):
    id: str
    store: str
    member: str
    points: int
    returned_points: int
    items: list[LineOut]
    transaction_id: str
    created_at: datetime
    # The member's community, when it is another one of the district (SPEC section 16).
    member_community: str | None = None


class ReturnLineOut(msgspec.Struct, kw_only=True):
    sku: str
    qty: int
    points: int


class ReturnOut(msgspec.Struct, kw_only=True):
    id: str
    redemption: str
    items: list[ReturnLineOut]
    points: int
    transaction_id: str
    created_at: datetime
