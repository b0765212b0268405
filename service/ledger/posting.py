"""Pure planning of ledger writes: balanced postings in, a lock-ordered plan out.

A plan lists each touched account once, sorted by address (the lock order every
writer uses), with the change to its posted balance, the change to its pending
debits, and the lowest `posted - held` it may be left at; and the legs of the
entries to append. The database's write engine (`ledger_write`) applies it under
row locks and checks the limits there. `AccountChange` and `Leg` are the SQL types
`ledger_account_change` and `ledger_leg`, field for field.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import msgspec

from service.errors import ValidationFailed
from service.ledger.model import (
    MAX_AMOUNT,
    MAX_POSTINGS,
    AccountRef,
    Posting,
    RuleParams,
    parse_address,
)

# How a debit of a member's points is limited: a spend keeps the baseline; a
# reversal (or, later, a clamped deduction) may go down to the floor; expiry takes
# exactly what its lots hold, whatever the balance (minutes never go below 0).
LimitMode = Literal["spend", "floor", "expiry"]


class AccountChange(msgspec.Struct, frozen=True, kw_only=True):
    """What a write changes on one account; `member` accounts are locked and checked."""

    address: str
    asset: str
    member: bool
    posted: int
    held: int
    minimum: int | None


class Leg(msgspec.Struct, frozen=True):
    """One entry: `amount` on the plan's `account`-th account (from 1, as in SQL)."""

    account: int
    amount: int


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    accounts: list[AccountChange]
    legs: list[Leg]
    # The rule set's expiry policy per asset for the lots of member credits; None
    # when nothing it credits expires.
    lot_policy: dict[str, str] | None = None

    @property
    def locks(self) -> list[str]:
        """The member accounts the write locks, in lock order."""
        return [a.address for a in self.accounts if a.member]


# A batch names the same few accounts again and again (the issuance account in
# every item, members in many); parsing is pure, so it is remembered. Refused
# addresses raise and are not remembered.
_account_ref = lru_cache(maxsize=16_384)(parse_address)


def check_postings(postings: Iterable[Posting]) -> dict[str, AccountRef]:
    """Validates postings on their own; returns the accounts they touch."""
    refs: dict[str, AccountRef] = {}
    count = 0
    for p in postings:
        count += 1
        if not 1 <= p.amount <= MAX_AMOUNT:
            raise ValidationFailed(f"amount {p.amount} is outside 1 … 10^12")
        if p.source == p.destination:
            raise ValidationFailed(f"posting moves {p.source!r} to itself")
        for address in (p.source, p.destination):
            ref = refs.get(address) or _account_ref(address)
            if ref.asset != p.asset:
                raise ValidationFailed(f"{address!r} holds {ref.asset}, not {p.asset}")
            refs[address] = ref
    if not 1 <= count <= MAX_POSTINGS:
        raise ValidationFailed(f"a transaction has 1 … {MAX_POSTINGS} postings, not {count}")
    return refs


def _minimum(ref: AccountRef, params: RuleParams, mode: LimitMode) -> int | None:
    if not ref.limited:
        return None
    if ref.asset == "minutes":
        return 0
    if mode == "expiry":
        return None
    return params.baseline if mode == "spend" else params.floor


def _net(postings: Iterable[Posting]) -> dict[str, int]:
    net: dict[str, int] = {}
    for p in postings:
        net[p.source] = net.get(p.source, 0) - p.amount
        net[p.destination] = net.get(p.destination, 0) + p.amount
    return net


def _legs(postings: Iterable[Posting], index: dict[str, int]) -> list[Leg]:
    legs: list[Leg] = []
    for p in postings:
        legs += [Leg(index[p.source], -p.amount), Leg(index[p.destination], p.amount)]
    return legs


def _plan(
    refs: dict[str, AccountRef],
    posted: dict[str, int],
    held: dict[str, int],
    minimum: dict[str, int | None],
    legs_from: tuple[Posting, ...],
) -> Plan:
    addresses = sorted(refs)
    index = {address: i for i, address in enumerate(addresses, 1)}  # SQL arrays start at 1
    accounts = [
        AccountChange(
            address=address,
            asset=refs[address].asset,
            member=refs[address].limited,
            posted=posted.get(address, 0),
            held=held.get(address, 0),
            minimum=minimum.get(address),
        )
        for address in addresses
    ]
    return Plan(accounts=accounts, legs=_legs(legs_from, index))


def plan_create(
    postings: tuple[Posting, ...], params: RuleParams, *, pending: bool, mode: LimitMode = "spend"
) -> Plan:
    """A new transaction: posted at once, or pending (its net debits are held)."""
    refs = check_postings(postings)
    net = _net(postings)
    minimum = {a: _minimum(ref, params, mode) for a, ref in refs.items() if ref.limited}
    if pending:
        held = {a: -d for a, d in net.items() if d < 0 and refs[a].limited}
        plan = _plan(refs, {}, held, minimum, ())
    else:
        plan = _plan(refs, net, {}, minimum, postings)
    policy = _lot_policy(params, refs, postings)
    return plan if policy is None else msgspec.structs.replace(plan, lot_policy=policy)


def _lot_policy(
    params: RuleParams, refs: dict[str, AccountRef], postings: tuple[Posting, ...]
) -> dict[str, str] | None:
    policy = {"points": params.expiry_points, "minutes": params.expiry_minutes}
    credited = {p.asset for p in postings if refs[p.destination].limited}
    if all(policy[asset] == "never" for asset in credited):
        return None
    return policy


def _release(reserved: tuple[Posting, ...], refs: dict[str, AccountRef]) -> dict[str, int]:
    return {a: d for a, d in _net(reserved).items() if d < 0 and refs[a].limited}


def plan_post_pending(
    reserved: tuple[Posting, ...], amount: int | None
) -> tuple[Plan, tuple[Posting, ...]]:
    """Posting a pending transaction: release what it held, post `amount` or all of it."""
    postings = reserved
    if amount is not None:
        if len(reserved) != 1:
            raise ValidationFailed("a partial amount can only post a single-posting transaction")
        if not 1 <= amount <= reserved[0].amount:
            raise ValidationFailed(f"amount must be 1 … {reserved[0].amount}, the amount held")
        postings = (msgspec.structs.replace(reserved[0], amount=amount),)
    refs = check_postings(reserved)
    release = _release(reserved, refs)
    return _plan(refs, _net(postings), release, {}, postings), postings


def plan_void(reserved: tuple[Posting, ...]) -> Plan:
    refs = check_postings(reserved)
    return _plan(refs, {}, _release(reserved, refs), {}, ())


def reversed_postings(postings: tuple[Posting, ...]) -> tuple[Posting, ...]:
    """The postings that undo `postings`: every amount flows back."""
    return tuple(
        msgspec.structs.replace(p, source=p.destination, destination=p.source) for p in postings
    )
