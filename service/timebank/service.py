"""Time bank use cases: moving minutes between members and converting them to points.

Both are ordinary ledger transactions, written through the same group commit as any
single write, so the minutes account's floor (0) and idempotency by the client's id
hold exactly as for points. A conversion's rate comes from the rule set in force,
and the transaction records that version.
"""

from __future__ import annotations

from math import gcd

from service.errors import InvalidState, ValidationFailed
from service.i18n import system_reason
from service.ledger.model import NewTransaction, Posting, member_address

CONVERSION_MINUTES = "system:conversion:minutes"
CONVERSION_POINTS = "system:conversion:points"


def time_transfer(
    client_id: str,
    from_member: str,
    to_member: str,
    minutes: int,
    memo: str | None,
    request_hash: bytes,
    actor: str,
    *,
    on_behalf_of: str | None = None,
) -> NewTransaction:
    """Minutes from one member to another (help given, or a donation); by a proxy's
    key (`actor`) `on_behalf_of` the giver."""
    if from_member == to_member:
        raise ValidationFailed("a time transfer needs two different members")
    posting = Posting(
        source=member_address(from_member, "minutes"),
        destination=member_address(to_member, "minutes"),
        asset="minutes",
        amount=minutes,
    )
    return NewTransaction(
        client_id=client_id,
        postings=(posting,),
        request_hash=request_hash,
        kind="time_transfer",
        memo=memo,
        actor=actor,
        on_behalf_of=on_behalf_of,
    )


def converted_points(minutes: int, points_per_hour: int) -> int:
    """The points `minutes` buy at the rate; only whole points, never a lost fraction."""
    if points_per_hour == 0:
        raise InvalidState("conversions are off: the rule set's time_bank.points_per_hour is 0")
    if minutes * points_per_hour % 60:
        raise ValidationFailed(
            f"{minutes} minutes at {points_per_hour} points an hour is not a whole number "
            "of points; convert a multiple of "
            f"{60 // gcd(60, points_per_hour)} minutes"
        )
    return minutes * points_per_hour // 60


def conversion(
    client_id: str,
    member: str,
    minutes: int,
    points_per_hour: int,
    rule_version: int,
    request_hash: bytes,
    actor: str,
    *,
    language: str,
) -> NewTransaction:
    """Minutes out of the member's time account, points into its points account; the
    reason in the community's `language`."""
    points = converted_points(minutes, points_per_hour)
    postings = (
        Posting(
            source=member_address(member, "minutes"),
            destination=CONVERSION_MINUTES,
            asset="minutes",
            amount=minutes,
        ),
        Posting(
            source=CONVERSION_POINTS,
            destination=member_address(member, "points"),
            asset="points",
            amount=points,
        ),
    )
    return NewTransaction(
        client_id=client_id,
        postings=postings,
        request_hash=request_hash,
        kind="conversion",
        reason=system_reason(
            language, "conversion", minutes=minutes, points_per_hour=points_per_hour
        ),
        rule_version=rule_version,
        actor=actor,
    )
