"""Moving house within a district (SPEC section 16): a member of community `a` who
moves to community `b` keeps what it earned above the baseline.

One database transaction, in this lock order: the member's accounts in `a` (as a
close takes them, first), then the new member of `b` is made (its new accounts,
which no one else can hold yet), then both sides are written by
`interchange_write` (community by community). In `a` the close's transaction takes
the redeemable points and every minute to `interchange:b:*` and the membership is
closed with its history, as any close; in `b` the new member gets the baseline
opening credit of `b`, and then, from `interchange:a:*`, what was carried: one
transaction per lot carried, earned and expiring when it was in `a`, so expiry
cannot be dodged by moving, nor cut short by it.

Which lots are carried: those the close's debit takes, in the order every debit
takes lots (soonest expiry first; `ledger_lots`), read under the account locks, so
they are exactly the lots the debit consumes (the audit's lot checks recompute it).

Once per id: a move's id is unique in the community it leaves (`member_moves`,
which also records what it carried, for replays, and names a move that carried
nothing and so wrote no transaction). A duplicate waiting for the member's locks
finds the member closed and the move recorded when it gets them: a replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from service.db import Conn, unit_of_work
from service.errors import IdempotencyConflict, InvalidState, MemberClosed
from service.ledger.model import (
    Asset,
    NewTransaction,
    Posting,
    RuleParams,
    interchange_address,
    member_address,
)
from service.network import service as network
from service.network import store
from service.setup import lifecycle
from service.setup import service as members
from service.setup.lifecycle import ClosedMember, CloseTerms


class MoveTo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    community: str
    member: str
    household: str


class CarriedLot(msgspec.Struct, frozen=True, kw_only=True):
    asset: Asset
    amount: int
    earned_at: datetime | None
    expires_at: datetime | None


class Carried(msgspec.Struct, frozen=True, kw_only=True):
    points: int
    minutes: int
    lots: list[CarriedLot]


class MovedMember(msgspec.Struct, kw_only=True):
    id: str
    closed: ClosedMember  # the old membership, in its community
    to_community: str
    member: members.Member  # the new one
    carried: Carried


def carried_lots(asset: Asset, amount: int, free: list[Any]) -> list[CarriedLot]:
    """What a debit of `amount` takes from lots with `free` parts in the debit's order
    (dicts or rows with expires_at, earned_at, free); beyond the lots (debt the
    member had), a lot of no known terms. Pure."""
    out: list[CarriedLot] = []
    left = amount
    for lot in free:
        if left == 0:
            break
        take = min(left, lot["free"])
        left -= take
        out.append(
            CarriedLot(
                asset=asset, amount=take, earned_at=lot["earned_at"], expires_at=lot["expires_at"]
            )
        )
    if left > 0:
        out.append(CarriedLot(asset=asset, amount=left, earned_at=None, expires_at=None))
    return out


def _merged(lots: list[CarriedLot]) -> list[CarriedLot]:
    """Lots of one asset earned and expiring together, as one."""
    merged: dict[tuple[str, datetime | None, datetime | None], CarriedLot] = {}
    for lot in lots:
        key = (lot.asset, lot.earned_at, lot.expires_at)
        had = merged.get(key)
        merged[key] = (
            lot if had is None else msgspec.structs.replace(had, amount=had.amount + lot.amount)
        )
    return list(merged.values())


def move_id(community: str, member: str) -> str:
    return f"move:{community}:{member}"


async def move_house(
    conn: Conn,
    community: str,
    member: str,
    to: MoveTo,
    request_hash: bytes,
    actor: str | None,
    terms: CloseTerms,
    to_params: RuleParams,
    to_language: str,
) -> tuple[MovedMember, bool]:
    """Moves the member to `to` once per id, unique in `community` (`member_moves`):
    a replay answers as the move did, another request under the id is a conflict."""
    district = await network.pair(conn, community, to.community)

    async def work() -> Carried | None:
        if await _made(conn, community, to.id, member, request_hash):
            return None
        reason = terms.default_reason
        close = await lifecycle.closing(conn, community, member, reason, actor, terms)
        if close is None:
            # Closed: by this very move, if a duplicate committed while this one
            # waited for the member's locks; otherwise it left before.
            if await _made(conn, community, to.id, member, request_hash):
                return None
            raise MemberClosed(f"member {member!r} moved out already")
        carried: list[CarriedLot] = []
        for p in close.postings:
            free = await store.member_free_lots(conn, community, p.source)
            carried += carried_lots(p.asset, p.amount, free)
        lots = _merged(carried)
        totals = {a: sum(x.amount for x in lots if x.asset == a) for a in ("points", "minutes")}
        done = Carried(points=totals["points"], minutes=totals["minutes"], lots=lots)
        out = msgspec.structs.replace(
            close,
            postings=tuple(
                msgspec.structs.replace(p, destination=interchange_address(to.community, p.asset))
                for p in close.postings
            ),
            request_hash=request_hash,
            kind="member_move",
            metadata={"move": to.id, "to_community": to.community, "to_member": to.member},
        )
        found = await members.get_member(conn, community, member)
        made = await members.add_member(
            conn,
            to.community,
            to.member,
            to.household,
            found.name,
            request_hash,
            to_params,
            to_language,
        )
        if not made:
            raise InvalidState(
                f"member {to.member!r} exists in community {to.community!r}; pick a new id"
            )
        into = _carried_in(community, member, to, done, request_hash, reason, actor)
        if out.postings:
            await network.write_change(
                conn,
                district,
                move_id(community, member),
                "member_move",
                network.Side(community=community, txs=(out,), params=terms.params),
                network.Side(community=to.community, txs=into, params=to_params),
            )
        await lifecycle.mark_closed(conn, community, member, actor, reason, out)
        recorded = await store.insert_member_move(
            conn,
            community,
            to.id,
            request_hash,
            member,
            to.community,
            to.member,
            district,
            msgspec.to_builtins(done),
            actor,
        )
        if not recorded:  # another member's move took the id meanwhile
            raise _conflict(to.id)
        return done

    done = await unit_of_work(conn, work)
    replayed = done is None
    if done is None:
        row = await store.member_move(conn, community, to.id)
        assert row is not None
        done = msgspec.convert(row["carried"], Carried)
    moved = MovedMember(
        id=to.id,
        closed=await lifecycle.closed_view(conn, community, member),
        to_community=to.community,
        member=await members.get_member(conn, to.community, to.member),
        carried=done,
    )
    return moved, replayed


def _carried_in(
    community: str,
    member: str,
    to: MoveTo,
    carried: Carried,
    request_hash: bytes,
    reason: str,
    actor: str | None,
) -> tuple[NewTransaction, ...]:
    """The new member's side: one credit from `interchange:<community>` per lot
    carried, earned and expiring as it did."""
    return tuple(
        NewTransaction(
            client_id=f"{move_id(community, member)}:{n}",
            postings=(
                Posting(
                    source=interchange_address(community, lot.asset),
                    destination=member_address(to.member, lot.asset),
                    asset=lot.asset,
                    amount=lot.amount,
                ),
            ),
            request_hash=request_hash,
            kind="member_move",
            reason=reason,
            actor=actor,
            metadata={"move": to.id, "from_community": community, "from_member": member},
            lot_earned_at=lot.earned_at,
            lot_expires=_policy(lot),
        )
        for n, lot in enumerate(carried.lots, 1)
    )


def _policy(lot: CarriedLot) -> str | None:
    """The lot's expiry as a policy for its new lot: at the same instant, or never;
    None (the rule set's) for what no lot held."""
    if lot.earned_at is None:
        return None
    return "never" if lot.expires_at is None else f"at:{lot.expires_at.isoformat()}"


def _conflict(ident: str) -> IdempotencyConflict:
    return IdempotencyConflict(f"move {ident!r} was made with different fields; use a new id")


async def _made(conn: Conn, community: str, ident: str, member: str, request_hash: bytes) -> bool:
    """Whether move `ident` of `community` was made, by this same request; one made
    by another request (of another member, or to another community, member or
    household) is a conflict."""
    row = await store.member_move(conn, community, ident)
    if row is None:
        return False
    if row["member_id"] != member or bytes(row["request_hash"]) != request_hash:
        raise _conflict(ident)
    return True
