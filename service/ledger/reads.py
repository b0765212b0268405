"""Read use cases: balances, account entries and member statements."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import msgspec

from service.errors import NotFound, ValidationFailed
from service.ledger import service as ledger
from service.ledger import store
from service.ledger.model import (
    MemberBalance,
    MinutesBalance,
    RuleParams,
    member_address,
    parse_address,
    points_balance,
)
from service.ledger.views import TransactionOut, transaction_out

_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_NO_CURSOR = 2**63 - 1


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    asset: str
    posted: int
    pending: int | None
    pending_credits: int | None
    available: int | None
    as_of: datetime | None = None


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    amount: int
    balance_after: int | None
    kind: str
    counterparty: str | None
    reason: str | None
    memo: str | None
    rule_id: str | None
    rule_version: int | None
    event_id: str | None
    actor: str | None
    # The member a proxy acted for, with its key as `actor` (SPEC section 11).
    on_behalf_of: str | None
    created_at: datetime


class EntryPage(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    entries: list[Entry]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return _NO_CURSOR
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        digits = raw[1:]
        seq = int(digits) if raw.startswith("e") and digits.isascii() and digits.isdigit() else -1
        if not 0 <= seq <= _NO_CURSOR:
            raise ValueError(raw)
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise ValidationFailed("cursor is not one this service returned") from err


async def member_balance(
    conn: store.Conn, community: str, member: str, params: RuleParams
) -> MemberBalance:
    addresses = [member_address(member, "points"), member_address(member, "minutes")]
    rows = {r["asset"]: r for r in await store.member_balances(conn, community, addresses)}
    if len(rows) != 2:
        raise NotFound(f"no member {member!r} in community {community!r}")
    points, minutes = rows["points"], rows["minutes"]
    return MemberBalance(
        points=points_balance(points["posted"], points["held"], params.baseline),
        minutes=MinutesBalance(balance=minutes["posted"], held=minutes["held"]),
    )


async def transaction(conn: store.Conn, community: str, client_id: str) -> TransactionOut:
    """A transaction as the API shows it, with the reversal that undid it, if any."""
    found = await ledger.get_transaction(conn, community, client_id)
    return transaction_out(found, await store.reversed_by(conn, community, found.row_id))


async def points_account(conn: store.Queryable, community: str, member: str) -> tuple[int, int]:
    """A member's points account: what is posted and what is held (no lock)."""
    rows = await store.member_balances(conn, community, [member_address(member, "points")])
    if not rows:
        raise NotFound(f"no member {member!r} in community {community!r}")
    return rows[0]["posted"], rows[0]["held"]


async def seal_lag_s(conn: store.Queryable) -> float:
    """How far the sealer trails the writes: the age of the oldest final transaction
    not yet sealed, in seconds."""
    return await store.seal_lag_s(conn)


async def _account(conn: store.Conn, community: str, address: str) -> Any:
    parse_address(address)
    row = await store.account(conn, community, address)
    if row is None:
        raise NotFound(f"no account {address!r} in community {community!r}")
    return row


async def account_balance(
    conn: store.Conn, community: str, address: str, as_of: datetime | None
) -> AccountBalance:
    """Posted, pending and available now, or the posted balance at a past time."""
    row = await _account(conn, community, address)
    if as_of is not None:
        posted = await store.account_posted_as_of(conn, community, row["id"], as_of)
        return AccountBalance(
            address=address,
            asset=row["asset"],
            posted=posted,
            pending=None,
            pending_credits=None,
            available=None,
            as_of=as_of,
        )
    debits, credits = await store.account_pending(conn, community, address)
    if row["limited"]:
        debits = row["held"]  # what limits use: the net debit each hold reserves
    return AccountBalance(
        address=address,
        asset=row["asset"],
        posted=row["posted"],
        pending=debits,
        pending_credits=credits,
        available=row["posted"] - debits,
    )


async def entries_page(
    conn: store.Conn,
    community: str,
    address: str,
    *,
    cursor: str | None,
    limit: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> EntryPage:
    """Entries of one account, newest first, `limit` at a time."""
    if not 1 <= limit <= 500:
        raise ValidationFailed("limit must be 1 … 500")
    parse_address(address)
    rows = await store.account_entries(
        conn,
        community,
        address,
        before_seq=decode_cursor(cursor),
        start=start or _FAR_PAST,
        end=end or _FAR_FUTURE,
        limit=limit + 1,
    )
    entries = [
        Entry(
            transaction_id=r["transaction_id"],
            amount=r["amount"],
            balance_after=r["balance_after"],
            kind=r["kind"],
            counterparty=r["counterparty"],
            reason=r["reason"],
            memo=r["memo"],
            rule_id=r["rule_id"],
            rule_version=r["rule_version"],
            event_id=r["event_id"],
            actor=r["actor"],
            on_behalf_of=r["on_behalf_of"],
            created_at=r["created_at"],
        )
        for r in rows[:limit]
    ]
    if not entries:
        await _account(conn, community, address)  # 404 if there is no such account
    more = len(rows) > limit
    return EntryPage(
        address=address,
        entries=entries,
        next_cursor=encode_cursor(rows[limit - 1]["seq"]) if more else None,
    )
