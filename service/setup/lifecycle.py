"""Member lifecycle (issue 14): a member who moves out is closed, and a member may
change household. Neither loses history: the member's row, accounts, entries and
statement stay, and every change of household is recorded with when and by whom.

Closing is one database transaction under the member's account locks, taken first
and in the order every ledger writer takes them (minutes before points), so a
concurrent spend and the close decide consistently: whichever locks first goes
first, and the other sees what it left. Under the locks it moves the member's
redeemable points (those above the baseline, which stays) to the account the rule
set names (`member_close.points_to`, by default `system:expired:points`) and all of
its minutes to `member_close.minutes_to` (by default the time bank's pool), as one
`member_close` transaction, and marks the member and both accounts closed. From then
on the database refuses any change to those accounts (sql/functions/setup.sql), and
the use cases that would spend or credit a member refuse first, with
`member_closed`. A member with pending transactions (holds, credits not yet
approved) is not closed until they are settled: a closed account could never post
or release them.

Moving locks the member's row (not its accounts: money does not move) and records
the change; offsets from then on are for the new household, and those made for the
old one stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from service.db import Conn, Queryable, unit_of_work
from service.errors import DomainError, InsufficientPoints, InvalidState, MemberClosed, NotFound
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting, RuleParams, points_balance
from service.ledger.views import TransactionOut, transaction_out
from service.setup import store
from service.setup.service import Member, get_member


class CloseTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What the rule set in force says about a close: the limits (whose baseline the
    member keeps), where its balances go, the reason written when the operator gives
    none (in the community's language), and the version, which the transaction records."""

    params: RuleParams
    points_to: str
    minutes_to: str
    default_reason: str
    rule_version: int


class ClosedMember(msgspec.Struct, kw_only=True):
    member: Member
    transaction: TransactionOut | None  # what took its balances; None when there was nothing


class HouseholdChange(msgspec.Struct, frozen=True, kw_only=True):
    from_household: str
    to_household: str
    changed_at: datetime
    changed_by: str | None  # the acting key


class HouseholdHistory(msgspec.Struct, kw_only=True):
    member: str
    household: str  # the current one
    changes: list[HouseholdChange]  # oldest first


def close_id(member: str) -> str:
    """The client id of a member's close. Client ids have no `:`, so no client's."""
    return f"close:{member}"


def closing_postings(accounts: Sequence[Any], terms: CloseTerms) -> list[Posting]:
    """What a close moves, from the locked accounts: the points above the baseline
    (what `redeemable` counts) and every minute. Pure."""
    postings: list[Posting] = []
    for account in accounts:
        asset, posted, held = account["asset"], account["posted"], account["held"]
        if asset == "points":
            amount = points_balance(posted, held, terms.params.baseline).redeemable
            destination = terms.points_to
        else:
            amount, destination = posted - held, terms.minutes_to
        if amount > 0:
            source = account["address"]
            postings.append(
                Posting(source=source, destination=destination, asset=asset, amount=amount)
            )
    return postings


async def close_member(
    conn: Conn,
    community: str,
    member: str,
    reason: str | None,
    actor: str | None,
    terms: CloseTerms,
) -> tuple[ClosedMember, bool]:
    """Closes the member once; closing it again answers with the first close (True)."""
    replayed = await unit_of_work(
        conn, lambda: _close(conn, community, member, reason or terms.default_reason, actor, terms)
    )
    return await closed_view(conn, community, member), replayed


async def _close(
    conn: Conn, community: str, member: str, reason: str, actor: str | None, terms: CloseTerms
) -> bool:
    tx = await closing(conn, community, member, reason, actor, terms)
    if tx is None:
        return True
    if tx.postings:
        await ledger.create(conn, community, tx, terms.params)
    await mark_closed(conn, community, member, actor, reason, tx)
    return False


async def closing(
    conn: Conn, community: str, member: str, reason: str, actor: str | None, terms: CloseTerms
) -> NewTransaction | None:
    """The first half of a close, inside the caller's transaction: the member's
    accounts locked (first, in the order every ledger writer takes them), the checks,
    and the transaction that takes its balances (no postings: nothing to take); None
    when the member is closed already. The caller writes it, then `mark_closed`."""
    accounts = await store.lock_member_accounts(conn, community, member)
    if not accounts:
        raise NotFound(f"no member {member!r} in community {community!r}")
    if any(a["closed_at"] is not None for a in accounts):
        return None
    pending = await store.pending_on(conn, community, [a["address"] for a in accounts])
    if pending:
        raise InvalidState(
            f"member {member!r} has pending transactions ({', '.join(pending)}): apply, "
            "cancel, approve or reject them first, then close the member",
            pending=pending,
        )
    return NewTransaction(
        client_id=close_id(member),
        postings=tuple(closing_postings(accounts, terms)),
        request_hash=b"member_close",
        kind="member_close",
        reason=reason,
        rule_version=terms.rule_version,
        actor=actor,
    )


async def mark_closed(
    conn: Conn, community: str, member: str, actor: str | None, reason: str, tx: NewTransaction
) -> None:
    """The second half: the member and its accounts marked closed (by `tx`, when it
    took anything)."""
    tx_id = tx.client_id if tx.postings else None
    await store.close_member(conn, community, member, actor, reason, tx_id)


async def closed_view(conn: Conn, community: str, member: str) -> ClosedMember:
    """A closed member as its close answers: the member and the transaction of its close."""
    found = await get_member(conn, community, member)
    tx = (await ledger.get_transactions(conn, community, [close_id(member)])).get(close_id(member))
    return ClosedMember(member=found, transaction=None if tx is None else transaction_out(tx))


async def move_member(
    conn: Conn, community: str, member: str, household: str, actor: str | None
) -> tuple[Member, bool]:
    """Moves the member to `household` (of any property company) and records the
    change; moving it where it already lives is a replay (True)."""

    async def work() -> bool:
        row = await store.lock_member(conn, community, member)
        if row is None:
            raise NotFound(f"no member {member!r} in community {community!r}")
        if row["household_id"] == household:
            return True
        if row["closed_at"] is not None:
            raise MemberClosed(
                f"member {member!r} moved out: it is closed and stays in the household it left"
            )
        if await store.household(conn, community, household) is None:
            raise NotFound(f"no household {household!r} in community {community!r}")
        await store.move_member(conn, community, member, row["household_id"], household, actor)
        return False

    replayed = await unit_of_work(conn, work)
    return await get_member(conn, community, member), replayed


async def household_history(conn: Conn, community: str, member: str) -> HouseholdHistory:
    found = await get_member(conn, community, member)
    rows = await store.member_households(conn, community, member)
    return HouseholdHistory(
        member=member,
        household=found.household,
        changes=[HouseholdChange(**dict(r)) for r in rows],
    )


def check_open(member: Member) -> Member:
    """The member, or `member_closed` if it moved out (for use cases that act on it)."""
    if member.status == "closed":
        raise MemberClosed(
            f"member {member.id!r} moved out and was closed at {member.closed_at}: "
            "its accounts take no more credits, debits or holds"
        )
    return member


async def refuse_closed(conn: Queryable, community: str, member: str) -> None:
    """Raises `member_closed` for a closed member; nothing for an open one or one that
    does not exist (the caller's own write says so)."""
    if await store.member_closed(conn, community, member):
        raise MemberClosed(
            f"member {member!r} moved out: its accounts take no more credits, debits or holds"
        )


async def explained(conn: Queryable, community: str, error: DomainError) -> DomainError:
    """`error` as its caller should hear it: a debit refused for want of points or
    minutes on a closed member's account is `member_closed` (what it could give left
    with its close), not a shortage that could be made up. One read, on refusals only."""
    account = error.extra.get("account") if isinstance(error, InsufficientPoints) else None
    if not isinstance(account, str) or not await store.closed_accounts(conn, community, [account]):
        return error
    return _closed_account(account)


def _closed_account(account: str) -> MemberClosed:
    return MemberClosed(
        f"{account} belongs to a member who moved out: it is closed and takes no more "
        "credits, debits or holds",
        account=account,
    )


async def refusing_closed(
    conn: Queryable, community: str, txs: Sequence[NewTransaction | DomainError]
) -> list[NewTransaction | DomainError]:
    """A batch of writes with each one that names a closed member's account replaced
    by its refusal, so that the rest are written (the database's guard would refuse
    the whole round trip). One read for the whole batch."""
    named = {
        address
        for tx in txs
        if isinstance(tx, NewTransaction)
        for p in tx.postings
        for address in (p.source, p.destination)
        if address.startswith("member:")
    }
    closed = await store.closed_accounts(conn, community, sorted(named)) if named else set()
    if not closed:
        return list(txs)
    return [_refusal(tx, closed) if isinstance(tx, NewTransaction) else tx for tx in txs]


def _refusal(tx: NewTransaction, closed: set[str]) -> NewTransaction | DomainError:
    for p in tx.postings:
        for address in (p.source, p.destination):
            if address in closed:
                return _closed_account(address)
    return tx
