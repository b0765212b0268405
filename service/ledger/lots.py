"""Reading lots (SPEC section 9): a member's lots, and the balance with what expires next.

The write engine keeps the lots (sql/functions/ledger.sql, `ledger_lots`); this module
only reads them. Lots are listed in the order debits consume them: soonest
`expires_at` first, non-expiring last, then oldest `earned_at`, then lowest id.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from service.db import Conn, q
from service.errors import NotFound, ValidationFailed
from service.ledger import model, store
from service.ledger.model import Asset, RuleParams, member_address

LotStatus = Literal["open", "all"]
_ASSETS: tuple[Asset, ...] = ("points", "minutes")
MAX_LIMIT = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ID = 2**63 - 1


class Lot(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    transaction_id: str  # the client id of the transaction whose credit made it
    earned_at: datetime
    amount: int
    remaining: int
    expires_at: datetime | None  # None: never


class LotPage(msgspec.Struct, frozen=True, kw_only=True):
    lots: list[Lot]
    next_cursor: str | None


class Expiring(msgspec.Struct, frozen=True, kw_only=True):
    """What of a member's lots would expire at one instant, less what is held."""

    expires_at: datetime
    amount: int


class PointsBalance(model.PointsBalance, frozen=True, kw_only=True):
    expiring: tuple[Expiring, ...]


class MinutesBalance(model.MinutesBalance, frozen=True, kw_only=True):
    expiring: tuple[Expiring, ...]


class MemberBalance(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The member balance as the API shows it; `as_of` only when one was asked for."""

    points: PointsBalance
    minutes: MinutesBalance
    as_of: datetime | None = None


def encode_cursor(lot: Lot) -> str:
    """The position after `lot`: its whole sort key, so that a page follows from
    the cursor alone, whatever has been consumed since."""
    expires = "" if lot.expires_at is None else str(_micros(lot.expires_at))
    raw = f"l{lot.id}.{expires}.{_micros(lot.earned_at)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, datetime | None, datetime]:
    """(id, expires_at, earned_at) of the last lot of the previous page, or 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("l"):
            raise ValueError(raw)
        ident, expires, earned = raw[1:].split(".")
        lot_id = _digits(ident)
        if lot_id > _MAX_ID:
            raise ValueError(raw)
        expires_at = None if expires == "" else _instant(_digits(expires))
        return lot_id, expires_at, _instant(_digits(earned))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as err:
        raise ValidationFailed("cursor is not one this service returned") from err


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _digits(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


async def lots_page(
    conn: Conn,
    community: str,
    member: str,
    *,
    asset: Asset,
    status: LotStatus,
    cursor: str | None,
    limit: int,
) -> LotPage:
    """A member's lots of one asset in consumption order, `limit` at a time."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be 1 … {MAX_LIMIT}")
    after_id, after_expires, after_earned = (
        (None, None, None) if cursor is None else decode_cursor(cursor)
    )
    address = member_address(member, asset)
    rows = await conn.fetch(
        q("lots_page"),
        community,
        address,
        status == "open",
        after_id,
        after_expires,
        after_earned,
        limit + 1,
    )
    lots = [Lot(**dict(r)) for r in rows[:limit]]
    if not lots and await store.account(conn, community, address) is None:
        raise NotFound(f"no member {member!r} in community {community!r}")
    more = len(rows) > limit
    return LotPage(lots=lots, next_cursor=encode_cursor(lots[-1]) if more else None)


async def member_balance(
    conn: Conn, community: str, member: str, params: RuleParams
) -> MemberBalance:
    """The member's balance now, each asset with the next three instants at which
    some of its lots expire (one round trip)."""
    addresses = [member_address(member, "points"), member_address(member, "minutes")]
    rows = await conn.fetch(q("member_balances_expiring"), community, addresses)
    accounts = {r["asset"]: r for r in rows}
    if len(accounts) != 2:
        raise NotFound(f"no member {member!r} in community {community!r}")
    expiring: dict[str, list[Expiring]] = {"points": [], "minutes": []}
    for r in rows:
        if r["expires_at"] is not None:
            expiring[r["asset"]].append(Expiring(expires_at=r["expires_at"], amount=r["amount"]))
    points, minutes = accounts["points"], accounts["minutes"]
    return _balance(
        model.points_balance(points["posted"], points["held"], params.baseline),
        model.MinutesBalance(balance=minutes["posted"], held=minutes["held"]),
        points_expiring=tuple(expiring["points"]),
        minutes_expiring=tuple(expiring["minutes"]),
    )


async def member_balance_as_of(
    conn: Conn, community: str, member: str, at: datetime, params: RuleParams
) -> MemberBalance:
    """The member's posted balances as they stood at `at`, with `params` (the rule
    set in force then). Nothing of what was held or about to expire then is kept,
    so `held` is 0 and `expiring` is empty; a time in the future is a 422."""
    if at > datetime.now(UTC):
        raise ValidationFailed("as_of must not be in the future")
    posted: dict[Asset, int] = {}
    for asset in _ASSETS:
        row = await store.account(conn, community, member_address(member, asset))
        if row is None:
            raise NotFound(f"no member {member!r} in community {community!r}")
        posted[asset] = await store.account_posted_as_of(conn, community, row["id"], at)
    return _balance(
        model.points_balance(posted["points"], 0, params.baseline),
        model.MinutesBalance(balance=posted["minutes"], held=0),
        points_expiring=(),
        minutes_expiring=(),
        as_of=at,
    )


def _balance(
    points: model.PointsBalance,
    minutes: model.MinutesBalance,
    *,
    points_expiring: tuple[Expiring, ...],
    minutes_expiring: tuple[Expiring, ...],
    as_of: datetime | None = None,
) -> MemberBalance:
    return MemberBalance(
        points=PointsBalance(**msgspec.structs.asdict(points), expiring=points_expiring),
        minutes=MinutesBalance(**msgspec.structs.asdict(minutes), expiring=minutes_expiring),
        as_of=as_of,
    )
