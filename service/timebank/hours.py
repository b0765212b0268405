"""Volunteer hours: logged once, then approved (by enough keys) or rejected once.

Each use case is one database transaction taking its locks in this order: the hours
row (its id is the idempotency key, so a concurrent duplicate or a racing
approve/reject waits there holding nothing), then the member's accounts (taken by
the ledger, minutes before points, as every writer takes them).

Hours need `approvals_needed` approvals (the rule set's `time_bank.approvals` when
they were logged) by distinct keys, none of them the key that logged them (SPEC
section 11); each approval is a row of `hours_approvals`, written under the hours'
lock, so a key approving twice, even racing itself, counts once. Only the approval
that makes the count is the decision: it posts the credit and runs the rules, in
its transaction. One rejection by a permitted key decides at once. An organiser
key limited to teams decides and reads only the hours of its teams.

The logged minutes are a pending ledger credit `vh:<id>` from
`system:timebank:minutes`: they count in the member's balance only once approved
(posted); a rejection voids them. Approval also runs the rules on a
`volunteer.approved` event (`vh:<id>:approved`, at the time the work started, with
`minutes`, `activity`, `hours_id`, `organiser` and `team`), in the same transaction, so the
points it awards and the minutes stand or fall together. Where the rule set does
not require approval, logging approves at once.

Hours served here by a member of another community of the district (SPEC section
16, `member_community`) are logged, queued and decided here like any others, but
hold no pending credit: the minutes are credited only when the hours are approved,
then as one change between the two communities (here `system:timebank:minutes →
interchange:<member community>:minutes`, there `interchange:<here>:minutes →
member:<m>:minutes`, with that community's expiry for minutes), and the rules that
run on the approval are the member's own community's. A rejection writes nothing.

Why the pending state of such hours is their row here alone, not a pending credit:
a pending ledger transaction here on `interchange:<member community>:minutes` would
be one side of a change that the ledger's own post and void (an operator's `POST
…/transactions/{id}/post`) could finish without the other, and a pending credit in
the member's community would have to be written there at logging and voided there
at rejection. With the row alone, nothing exists on either side until the decision,
which writes both (approval) or neither (rejection), so no state is one-sided. What
is given up: the member's own community shows no pending minutes for the hours
until they are approved (the queue here shows them). The rules run in the member's
community because they count per member (caps, statistics, an event's member
belongs to its community) and credit the member's accounts, which live there; this
community's rules see nothing of the hours (`volunteer.approved` is recorded there
as `vh:<here>:<id>:approved`).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

from service import setup
from service.auth import Principal
from service.db import Conn, Queryable, unit_of_work
from service.errors import (
    Forbidden,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from service.ledger import service as ledger
from service.ledger.model import (
    ID_PATTERN,
    NewTransaction,
    Posting,
    interchange_address,
    member_address,
)
from service.network import service as network
from service.rules import service as rules
from service.rules.book import RuleBook
from service.rules.engine import EventInput
from service.rules.periods import countable
from service.timebank import store

HoursStatus = Literal["pending", "approved", "rejected"]
Decision = Literal["approved", "rejected"]
APPROVED_EVENT = "volunteer.approved"


class LogHours(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    member: str
    activity: str
    started_at: datetime
    minutes: int
    organiser: str | None = None
    team: str | None = None
    # The member's community, when it is another of the district (SPEC section 16).
    member_community: str | None = None


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    approved_at: datetime


class Hours(msgspec.Struct, kw_only=True):
    id: str
    member: str
    activity: str
    started_at: datetime
    minutes: int
    organiser: str | None
    team: str | None
    status: HoursStatus
    transaction_id: str
    created_at: datetime
    # The key that logged the hours; it may never decide them.
    logged_by: str | None
    decided_at: datetime | None
    # The key whose approval completed them, or that rejected them.
    decided_by: str | None
    approvals_needed: int
    # Every approval given so far, oldest first.
    approvals: list[Approval]
    # What the approval's event posted, in the response to the call that approved.
    event: rules.EventResult | None = None
    member_community: str | None = None


def credit_id(hours_id: str) -> str:
    return f"vh:{hours_id}"


class HoursPage(msgspec.Struct, kw_only=True):
    hours: list[Hours]
    next_cursor: str | None


def _hours(
    row: Any, approvals: list[Approval] | None = None, event: rules.EventResult | None = None
) -> Hours:
    """The hours of `row`; their approvals from `approvals`, or else from the row's
    `approval_keys` and `approval_times` (the reads' rows have them)."""
    if approvals is None:
        approvals = [
            Approval(key_id=k, approved_at=t)
            for k, t in zip(row["approval_keys"], row["approval_times"], strict=True)
        ]
    return Hours(
        id=row["id"],
        member=row["member_id"],
        activity=row["activity"],
        started_at=row["started_at"],
        minutes=row["minutes"],
        organiser=row["organiser"],
        team=row["team"],
        status=row["status"],
        transaction_id=credit_id(row["id"]),
        created_at=row["created_at"],
        logged_by=row["actor"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        approvals_needed=row["approvals_needed"],
        approvals=approvals,
        event=event,
        member_community=row["member_community"],
    )


def in_scope(principal: Principal, team: str | None) -> bool:
    """Whether `principal` may see and decide hours of `team`: an organiser limited
    to teams only those of its teams (not hours without one); every other key that
    may call the endpoint all of its community's."""
    return principal.teams is None or (team is not None and team in principal.teams)


async def log_hours(
    conn: Conn,
    book: RuleBook,
    community: str,
    data: LogHours,
    request_hash: bytes,
    actor: str,
) -> tuple[Hours, bool]:
    """Records hours (pending, or approved where no approval is required); once.
    Hours whose `volunteer.approved` event the rules could not count are refused
    now, not left pending where no approval could ever pass."""
    active = await book.active(conn, community)
    at_once = not active.rule_set.time_bank.approval_required
    away = data.member_community
    if away is not None:
        await network.pair(conn, community, away)
        await setup.get_member(conn, away, data.member)  # 404 for an unknown member
    # The rules that count the approval are those of the member's community.
    countable_start = countable(data.started_at, await book.timezone(conn, away or community))

    async def attempt() -> tuple[Hours, bool]:
        try:
            row = await store.insert_hours(
                conn,
                community,
                data.id,
                data.member,
                data.activity,
                data.started_at,
                data.minutes,
                data.organiser,
                "approved" if at_once else "pending",
                request_hash,
                actor,
                data.team,
                active.rule_set.time_bank.approvals,
                away,
            )
        except asyncpg.ForeignKeyViolationError as err:
            raise NotFound(f"no member {data.member!r} in community {community!r}") from err
        if row is None:
            existing = await store.get_hours(conn, community, data.id)
            assert existing is not None  # the conflict was on this very key
            if bytes(existing["request_hash"]) != request_hash:
                raise IdempotencyConflict(
                    f"hours {data.id!r} were logged with different fields; use a new id"
                )
            return _hours(existing), True
        if not countable_start:
            raise ValidationFailed("started_at is out of range")
        # A pending credit does not touch the account, so the database's guard would
        # only refuse it at approval: a member who moved out logs nothing.
        await setup.refuse_closed(conn, away or community, data.member)
        if away is not None:
            event = await _credit_away(conn, book, community, row, actor) if at_once else None
            return _hours(row, [], event), False
        credit = _credit(data, pending=not at_once, actor=actor)
        await ledger.create(conn, community, credit, active.rule_set.to_params())
        event = await _approved_event(conn, book, community, row, actor) if at_once else None
        return _hours(row, [], event), False

    return await unit_of_work(conn, attempt)


def _credit(data: LogHours, *, pending: bool, actor: str) -> NewTransaction:
    posting = Posting(
        source="system:timebank:minutes",
        destination=member_address(data.member, "minutes"),
        asset="minutes",
        amount=data.minutes,
    )
    return NewTransaction(
        client_id=credit_id(data.id),
        postings=(posting,),
        request_hash=b"volunteer-hours",
        kind="volunteer_hours",
        pending=pending,
        reason=data.activity,
        actor=actor,
    )


async def decide(
    conn: Conn,
    book: RuleBook,
    community: str,
    hours_id: str,
    status: Decision,
    principal: Principal,
) -> tuple[Hours, bool]:
    """Records `principal`'s approval, and approves the hours (posts the credit, runs
    the rules) when it is the last one needed; or rejects them (voids the credit).

    Refusals in this order: unknown hours 404; another team's hours (an organiser
    limited to teams) 403; the key that logged them 403; hours already decided the
    other way 409. Deciding the way they were decided, or approving again with a
    key whose approval is recorded, is a replay: nothing changes."""
    actor = principal.key_id

    async def attempt() -> tuple[Hours, bool]:
        row = await store.lock_hours(conn, community, hours_id)
        if row is None:
            raise NotFound(f"no volunteer hours {hours_id!r} in community {community!r}")
        if not in_scope(principal, row["team"]):
            raise _other_team(principal, "decides")
        if row["actor"] == actor:
            raise Forbidden("the key that logged hours may not approve or reject them")
        if row["status"] == status:
            return _hours(row, await _approvals(conn, community, hours_id)), True
        if row["status"] != "pending":
            raise InvalidState(f"hours {hours_id!r} are already {row['status']}")
        if status == "rejected":
            if row["member_community"] is None:  # hours of another's member hold nothing
                await ledger.void(conn, community, credit_id(hours_id), "rejected")
            row = await store.decide_hours(conn, community, hours_id, status, actor)
            return _hours(row, await _approvals(conn, community, hours_id)), False
        added = await store.add_approval(conn, community, hours_id, actor)
        approvals = await _approvals(conn, community, hours_id)
        if not added:
            return _hours(row, approvals), True
        if len(approvals) < row["approvals_needed"]:
            return _hours(row, approvals), False
        if row["member_community"] is not None:
            row = await store.decide_hours(conn, community, hours_id, status, actor)
            event = await _credit_away(conn, book, community, row, actor)
            return _hours(row, approvals, event), False
        await ledger.post(conn, community, credit_id(hours_id), None)
        row = await store.decide_hours(conn, community, hours_id, status, actor)
        event = await _approved_event(conn, book, community, row, actor)
        return _hours(row, approvals, event), False

    return await unit_of_work(conn, attempt)


def _other_team(principal: Principal, verb: str) -> Forbidden:
    return Forbidden(f"this key {verb} only the hours of teams {list(principal.teams or ())}")


async def _approvals(conn: Conn, community: str, hours_id: str) -> list[Approval]:
    rows = await store.approvals(conn, community, hours_id)
    return [Approval(key_id=r["key_id"], approved_at=r["approved_at"]) for r in rows]


async def get_hours(conn: Queryable, community: str, hours_id: str, principal: Principal) -> Hours:
    """The hours; another team's are 403 to an organiser limited to teams."""
    row = await store.get_hours(conn, community, hours_id)
    if row is None:
        raise NotFound(f"no volunteer hours {hours_id!r} in community {community!r}")
    if not in_scope(principal, row["team"]):
        raise _other_team(principal, "reads")
    return _hours(row)


STATUSES: tuple[HoursStatus, ...] = ("pending", "approved", "rejected")
MAX_LIMIT = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID = re.compile(ID_PATTERN)


def encode_cursor(hours: Hours) -> str:
    """The position after `hours` in the queue: its (created_at, id)."""
    micros = (hours.created_at - _EPOCH) // timedelta(microseconds=1)
    raw = msgspec.json.encode([micros, hours.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the last hours of the previous page, or 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, hours_id = msgspec.json.decode(raw, type=tuple[int, str])
        if not _ID.match(hours_id):
            raise ValueError(hours_id)
        return _EPOCH + timedelta(microseconds=micros), hours_id
    except (ValueError, OverflowError, binascii.Error, msgspec.DecodeError) as err:
        raise ValidationFailed("cursor is not one this service returned") from err


async def hours_page(
    conn: Queryable,
    community: str,
    principal: Principal,
    *,
    status: HoursStatus | None,
    team: str | None,
    member: str | None,
    cursor: str | None,
    limit: int,
) -> HoursPage:
    """The queue: hours oldest first (created_at, id), `limit` at a time, filtered by
    `status` (all when None), `team` and `member`. An organiser limited to teams sees
    only theirs; naming another team is 403."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be 1 … {MAX_LIMIT}")
    if team is not None and not in_scope(principal, team):
        raise _other_team(principal, "reads")
    after = None if cursor is None else decode_cursor(cursor)
    rows = await store.hours_page(
        conn,
        community,
        STATUSES if status is None else (status,),
        team,
        principal.teams,
        member,
        after,
        limit + 1,
    )
    page = [_hours(r) for r in rows[:limit]]
    more = len(rows) > limit
    return HoursPage(hours=page, next_cursor=encode_cursor(page[-1]) if more else None)


def away_credit_id(community: str, hours_id: str) -> str:
    """The credit, in the member's community, of hours served in `community`."""
    return f"vh:{community}:{hours_id}"


async def _credit_away(
    conn: Conn, book: RuleBook, community: str, row: Any, actor: str
) -> rules.EventResult:
    """Approved hours of a member of another community: the minutes as one change
    between the two communities, then the rules of the member's community."""
    away, member = row["member_community"], row["member_id"]
    district = await network.pair(conn, community, away)
    here = NewTransaction(
        client_id=credit_id(row["id"]),
        postings=(
            Posting(
                source="system:timebank:minutes",
                destination=interchange_address(away, "minutes"),
                asset="minutes",
                amount=row["minutes"],
            ),
        ),
        request_hash=b"volunteer-hours",
        kind="volunteer_hours",
        reason=row["activity"],
        actor=actor,
        metadata={"hours": row["id"], "member": member, "member_community": away},
    )
    there = NewTransaction(
        client_id=away_credit_id(community, row["id"]),
        postings=(
            Posting(
                source=interchange_address(community, "minutes"),
                destination=member_address(member, "minutes"),
                asset="minutes",
                amount=row["minutes"],
            ),
        ),
        request_hash=b"volunteer-hours",
        kind="volunteer_hours",
        reason=row["activity"],
        actor=actor,
        metadata={"hours": row["id"], "served_in": community},
    )
    await network.write_change(
        conn,
        district,
        f"volunteer_hours:{community}:{row['id']}",
        "volunteer_hours",
        network.Side(community=community, txs=(here,), params=await book.params(conn, community)),
        network.Side(community=away, txs=(there,), params=await book.params(conn, away)),
    )
    return await _approved_event(
        conn, book, away, row, actor, event_id=f"{away_credit_id(community, row['id'])}:approved"
    )


async def _approved_event(
    conn: Conn,
    book: RuleBook,
    community: str,
    row: Any,
    actor: str,
    *,
    event_id: str | None = None,
) -> rules.EventResult:
    event = EventInput(
        id=event_id or f"{credit_id(row['id'])}:approved",
        type=APPROVED_EVENT,
        member_id=row["member_id"],
        occurred_at=row["started_at"],
        attributes={
            "minutes": row["minutes"],
            "activity": row["activity"],
            "hours_id": row["id"],
            "organiser": row["organiser"] or "",
            "team": row["team"] or "",
        },
    )
    result, _ = await rules.record_event(conn, book, community, event, b"volunteer.approved", actor)
    return result
