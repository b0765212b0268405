"""Time bank use cases: moving minutes between members and converting them to points.

Both are ordinary ledger transactions, written through the same group commit as any
single write, so the minutes account's floor (0) and idempotency by the client's id
hold exactly as for points. A conversion's rate comes from the rule set in force,
and the transaction records that version. A transfer to a member of another
community of the district is one change between the two (`transfer_away`).
"""

from __future__ import annotations

from math import gcd

import msgspec

from service import setup
from service.db import Conn, unit_of_work
from service.errors import InsufficientPoints, InvalidState, ValidationFailed
from service.i18n import system_reason
from service.ledger import service as ledger
from service.ledger.model import (
    NewTransaction,
    Posting,
    RuleParams,
    Transaction,
    interchange_address,
    member_address,
)
from service.network import service as network

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
    across: bool = False,
) -> NewTransaction:
    """Minutes from one member to another (help given, or a donation); by a proxy's
    key (`actor`) `on_behalf_of` the giver. `across`: the receiver is a member of
    another community (`transfer_away`), so the same id names someone else there."""
    if from_member == to_member and not across:
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


def away_transfer_id(community: str, client_id: str) -> str:
    """The receiving side of a transfer from community `community`, in the receiver's
    community (client ids have no ':', so it cannot meet one of its own)."""
    return f"time_transfer:{community}:{client_id}"


async def transfer_away(
    conn: Conn,
    community: str,
    to_community: str,
    new: NewTransaction,
    params: RuleParams,
    to_params: RuleParams,
) -> tuple[Transaction, bool]:
    """The time transfer `new` (from `time_transfer`) to a member of another community
    of the district (SPEC section 16): one change, in this community
    `member:<giver>:minutes → interchange:<to_community>:minutes`, there
    `interchange:<community>:minutes → member:<receiver>:minutes`. Once per id: a
    replay answers with this side's transaction."""
    district = await network.pair(conn, community, to_community)
    posting = new.postings[0]
    receiver = posting.destination
    out = msgspec.structs.replace(
        new,
        postings=(
            msgspec.structs.replace(
                posting, destination=interchange_address(to_community, "minutes")
            ),
        ),
        metadata={"to_community": to_community, "to_member": receiver.split(":")[1]},
    )
    into = msgspec.structs.replace(
        new,
        client_id=away_transfer_id(community, new.client_id),
        postings=(
            msgspec.structs.replace(posting, source=interchange_address(community, "minutes")),
        ),
        metadata={"from_community": community, "from_member": posting.source.split(":")[1]},
    )

    async def work() -> bool:
        await setup.refuse_closed(conn, to_community, receiver.split(":")[1])
        return await network.write_change(
            conn,
            district,
            f"time_transfer:{community}:{new.client_id}",
            "time_transfer",
            network.Side(community=community, txs=(out,), params=params),
            network.Side(community=to_community, txs=(into,), params=to_params),
        )

    try:
        made = await unit_of_work(conn, work)
    except InsufficientPoints as err:  # a closed giver's account: member_closed
        raise await setup.explained(conn, community, err) from None
    found = await ledger.replay_of(conn, community, new.client_id, new.request_hash)
    assert found is not None
    return found, not made


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
