"""Volunteer hours: logged once, then approved or rejected once.

Each use case is one database transaction taking its locks in this order: the hours
row (its id is the idempotency key, so a concurrent duplicate or a racing
approve/reject waits there holding nothing), then the member's accounts (taken by
the ledger, minutes before points, as every writer takes them).

The logged minutes are a pending ledger credit `vh:<id>` from
`system:timebank:minutes`: they count in the member's balance only once approved
(posted); a rejection voids them. Approval also runs the rules on a
`volunteer.approved` event (`vh:<id>:approved`, at the time the work started, with
`minutes`, `activity`, `hours_id` and `organiser`), in the same transaction, so the
points it awards and the minutes stand or fall together. Where the rule set does
not require approval, logging approves at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service import setup
from service.db import Conn, Queryable, unit_of_work
from service.errors import IdempotencyConflict, InvalidState, NotFound, ValidationFailed
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting, member_address
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


class Hours(msgspec.Struct, kw_only=True):
    id: str
    member: str
    activity: str
    started_at: datetime
    minutes: int
    organiser: str | None
    status: HoursStatus
    transaction_id: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    # What the approval's event posted, in the response to the call that approved.
    event: rules.EventResult | None = None


def credit_id(hours_id: str) -> str:
    return f"vh:{hours_id}"


def _hours(row: Any, event: rules.EventResult | None = None) -> Hours:
    return Hours(
        id=row["id"],
        member=row["member_id"],
        activity=row["activity"],
        started_at=row["started_at"],
        minutes=row["minutes"],
        organiser=row["organiser"],
        status=row["status"],
        transaction_id=credit_id(row["id"]),
        created_at=row["created_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        event=event,
    )


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
    countable_start = countable(data.started_at, await book.timezone(conn, community))

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
        await setup.refuse_closed(conn, community, data.member)
        credit = _credit(data, pending=not at_once, actor=actor)
        await ledger.create(conn, community, credit, active.rule_set.to_params())
        event = await _approved_event(conn, book, community, row, actor) if at_once else None
        return _hours(row, event), False

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
    actor: str,
) -> tuple[Hours, bool]:
    """Approves (posts the credit, runs the rules) or rejects (voids it); deciding
    the same way again is a replay, the other way a 409."""

    async def attempt() -> tuple[Hours, bool]:
        row = await store.lock_hours(conn, community, hours_id)
        if row is None:
            raise NotFound(f"no volunteer hours {hours_id!r} in community {community!r}")
        if row["status"] == status:
            return _hours(row), True
        if row["status"] != "pending":
            raise InvalidState(f"hours {hours_id!r} are already {row['status']}")
        if status == "approved":
            await ledger.post(conn, community, credit_id(hours_id), None)
        else:
            await ledger.void(conn, community, credit_id(hours_id), "rejected")
        row = await store.decide_hours(conn, community, hours_id, status, actor)
        approved = status == "approved"
        event = await _approved_event(conn, book, community, row, actor) if approved else None
        return _hours(row, event), False

    return await unit_of_work(conn, attempt)


async def get_hours(conn: Queryable, community: str, hours_id: str) -> Hours:
    row = await store.get_hours(conn, community, hours_id)
    if row is None:
        raise NotFound(f"no volunteer hours {hours_id!r} in community {community!r}")
    return _hours(row)


async def _approved_event(
    conn: Conn, book: RuleBook, community: str, row: Any, actor: str
) -> rules.EventResult:
    event = EventInput(
        id=f"{credit_id(row['id'])}:approved",
        type=APPROVED_EVENT,
        member_id=row["member_id"],
        occurred_at=row["started_at"],
        attributes={
            "minutes": row["minutes"],
            "activity": row["activity"],
            "hours_id": row["id"],
            "organiser": row["organiser"] or "",
        },
    )
    result, _ = await rules.record_event(conn, book, community, event, b"volunteer.approved", actor)
    return result
