"""Pure offset values and rules: an offset to create, the caps of a quote or an
offset, and what status a row is in.

Caps are checked in a documented order, and the first that bites is named:
`min_points`, `bill_amount_fen` (an offset never exceeds its bill),
`max_bill_percent`, `max_fen_per_household_per_year`; `redeemable` is the ledger's
own limit and is enforced (as 409 `insufficient_points`) when the points move.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

from service.errors import CapExceeded
from service.rules.model import RuleSet

OffsetStatus = Literal["held", "applied", "cancelled", "expired"]
CAP_NAMES: Final = (
    "min_points",
    "bill_amount_fen",
    "max_bill_percent",
    "max_fen_per_household_per_year",
)


class Caps(msgspec.Struct, frozen=True, kw_only=True):
    """What the rule set allows one bill of one household now, in points."""

    fen_per_point: int
    min_points: int
    bill_points: int  # the whole bill, in points (rounded down)
    percent_points: int | None  # max_bill_percent of the bill, in points
    household_points: int | None  # what the household's yearly cap has left, in points
    household_left_fen: int | None


class NewOffset(msgspec.Struct, frozen=True, kw_only=True):
    """An offset a request asks for, its company found and its body fingerprinted."""

    id: str
    member: str
    household: str
    property_company: str
    bill_amount_fen: int
    points: int
    hold: bool
    hold_ttl_s: int | None
    request_hash: bytes
    actor: str | None
    # The role of the key asking: a property key's offset needs the member's
    # mandate where the rule set requires consent (SPEC section 10).
    role: str


def caps(rule_set: RuleSet, bill_amount_fen: int, household_used_fen: int) -> Caps:
    fen = rule_set.fen_per_point
    rules = rule_set.offset
    percent = None
    if rules.max_bill_percent is not None:
        percent = bill_amount_fen * rules.max_bill_percent // 100 // fen
    left_fen = None
    if rules.max_fen_per_household_per_year is not None:
        left_fen = max(0, rules.max_fen_per_household_per_year - household_used_fen)
    return Caps(
        fen_per_point=fen,
        min_points=rules.min_points or 1,
        bill_points=bill_amount_fen // fen,
        percent_points=percent,
        household_points=None if left_fen is None else left_fen // fen,
        household_left_fen=left_fen,
    )


def max_points(limits: Caps, redeemable: int) -> int:
    """The most points one offset may take; 0 when even `min_points` does not fit."""
    bounds = [redeemable, limits.bill_points]
    bounds += [b for b in (limits.percent_points, limits.household_points) if b is not None]
    most = min(bounds)
    return most if most >= limits.min_points else 0


def check(limits: Caps, points: int) -> None:
    """Raises `cap_exceeded` naming the first cap `points` breaks (in CAP_NAMES order)."""
    fen = limits.fen_per_point
    if points < limits.min_points:
        raise CapExceeded(
            f"an offset takes at least {limits.min_points} points",
            cap="min_points",
            limit=limits.min_points,
            requested=points,
        )
    bounds = (
        ("bill_amount_fen", limits.bill_points, "the bill"),
        ("max_bill_percent", limits.percent_points, "the rule set's share of the bill"),
        ("max_fen_per_household_per_year", limits.household_points, "the household's yearly cap"),
    )
    for name, most, what in bounds:
        if most is not None and points > most:
            raise CapExceeded(
                f"{points} points ({points * fen} fen) exceed {what}: at most {most} points "
                f"({most * fen} fen) now",
                cap=name,
                max_points=most,
                requested=points,
            )


def status_of(
    tx_status: str,
    void_reason: str | None,
    expires_at: datetime | None,
    reversed_: bool,
    now: datetime,
) -> OffsetStatus:
    """An offset's status, read from its ledger transaction. A hold past its expiry
    is `expired` even before the expiry job voids it: it can no longer be applied."""
    if tx_status == "pending":
        return "expired" if expires_at is not None and expires_at <= now else "held"
    if tx_status == "voided":
        return "expired" if void_reason == "expired" else "cancelled"
    return "cancelled" if reversed_ else "applied"
