"""How offsets look to clients, built from an offset row and its ledger transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec

from service.consent.service import MandateOut
from service.offsets.model import NewOffset, OffsetStatus, status_of


class OffsetOut(msgspec.Struct, kw_only=True):
    id: str
    status: OffsetStatus
    member: str
    household: str
    property_company: str
    bill_amount_fen: int
    points: int
    offset_fen: int
    fen_per_point: int
    rule_version: int
    transaction_id: str
    created_at: datetime
    expires_at: datetime | None
    applied_at: datetime | None
    cancelled_at: datetime | None
    # The member's mandate it was made under (SPEC section 10); None for an
    # operator's offset or where the rule set needs no consent.
    mandate_id: str | None = None


class OffsetTotals(msgspec.Struct, kw_only=True):
    """Settlement totals: applied (posted, not reversed) and still held."""

    applied_count: int
    applied_points: int
    applied_fen: int
    held_count: int
    held_points: int
    held_fen: int


class OffsetPage(msgspec.Struct, kw_only=True):
    offsets: list[OffsetOut]
    totals: OffsetTotals
    next_cursor: str | None


class QuoteOut(msgspec.Struct, kw_only=True):
    redeemable_points: int
    max_points: int
    max_offset_fen: int
    fen_per_point: int
    min_points: int
    household_left_fen: int | None
    # Whether this key's offsets need the member's mandate, and the one in force
    # (max_points stays within it).
    mandate_required: bool = False
    mandate: MandateOut | None = None


def transaction_id(offset_id: str) -> str:
    """The ledger client id of an offset's transaction (':' keeps it out of client ids)."""
    return f"offset:{offset_id}"


def offset_out(row: asyncpg.Record, now: datetime | None = None) -> OffsetOut:
    now = now or datetime.now(UTC)
    status = status_of(
        row["tx_status"], row["void_reason"], row["expires_at"], row["reversed_at"] is not None, now
    )
    finalized = row["finalized_at"]
    return OffsetOut(
        id=row["id"],
        status=status,
        member=row["member_id"],
        household=row["household_id"],
        property_company=row["property_company"],
        bill_amount_fen=row["bill_amount_fen"],
        points=row["points"],
        offset_fen=row["offset_fen"],
        fen_per_point=row["fen_per_point"],
        rule_version=row["rule_version"],
        transaction_id=transaction_id(row["id"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        applied_at=finalized if row["tx_status"] == "posted" else None,
        cancelled_at=row["reversed_at"] or (finalized if row["tx_status"] == "voided" else None),
        mandate_id=row["mandate_id"],
    )


def creation_view(offset: OffsetOut, hold: bool) -> OffsetOut:
    """The offset as its creating request returned it, for idempotent replays."""
    return msgspec.structs.replace(
        offset,
        status="held" if hold else "applied",
        applied_at=None if hold else offset.applied_at,
        cancelled_at=None,
    )


def created_view(
    new: NewOffset,
    fen_per_point: int,
    rule_version: int,
    created_at: datetime,
    expires_at: datetime | None,
) -> OffsetOut:
    """A new offset as its creating request returns it, from what was written: the
    same as `creation_view` of the stored row. A transaction created posted is
    finalized at its creation, now(), which is also the offset's `created_at`."""
    return OffsetOut(
        id=new.id,
        status="held" if new.hold else "applied",
        member=new.member,
        household=new.household,
        property_company=new.property_company,
        bill_amount_fen=new.bill_amount_fen,
        points=new.points,
        offset_fen=new.points * fen_per_point,
        fen_per_point=fen_per_point,
        rule_version=rule_version,
        transaction_id=transaction_id(new.id),
        created_at=created_at,
        expires_at=expires_at,
        applied_at=None if new.hold else created_at,
        cancelled_at=None,
    )
