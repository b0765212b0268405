"""Rules use cases: publish a rule set, and turn an event into explained postings.

An event is one database transaction: its row (the idempotency key), the member's
points account locked (so caps and floors are exact under concurrent events), the
statistics read, the pure engine run, every posting written in one round trip, the
counters advanced, and the result stored for replays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.db import Conn, unit_of_work
from service.errors import IdempotencyConflict, NotFound, ValidationFailed
from service.ledger import service as ledger
from service.ledger.model import (
    Asset,
    NewTransaction,
    Outcome,
    Posting,
    RuleParams,
    member_address,
)
from service.ledger.views import TransactionOut, transaction_out
from service.rules import store
from service.rules.book import ActiveRules, RuleBook
from service.rules.deadline import Deadline
from service.rules.engine import Decision, EventInput, evaluate
from service.rules.periods import countable, countable_keys, current_keys
from service.webhooks import service as webhooks


class DecisionView(msgspec.Struct, kw_only=True):
    """One rule's verdict on an event: what it asked, what was posted, and why."""

    rule_id: str
    kind: str
    requested: int
    applied: int
    reason: str
    skipped: str | None
    why: str | None
    transaction_id: str | None


class EventRecord(msgspec.Struct, kw_only=True):
    """What an event came to, as stored with it (`events.result`) for replays: the
    domain's record, not the HTTP answer, which a replay renders again from it and
    the ledger's transactions. (Rows stored before this record also hold their
    answer's `transactions`; reading ignores them.)"""

    id: str
    type: str
    member: str
    occurred_at: datetime
    rule_version: int
    decisions: list[DecisionView]
    note: str | None = None


class EventResult(msgspec.Struct, kw_only=True):
    id: str
    type: str
    member: str
    occurred_at: datetime
    rule_version: int
    transactions: list[TransactionOut]
    decisions: list[DecisionView]
    note: str | None = None


class Published(msgspec.Struct, kw_only=True):
    version: int
    effective_from: datetime
    created_at: datetime


async def publish(
    conn: Conn,
    book: RuleBook,
    community: str,
    document: dict[str, Any],
    source: str,
    media_type: str,
    effective_from: datetime | None,
    actor: str | None,
) -> Published:
    """Stores an immutable new version and puts it in force (now, or from `effective_from`).
    A start outside the calendar events can have is refused: at the very ends of the
    range PostgreSQL would store it as infinity, which reads back without an offset."""
    if effective_from is not None and not countable(
        effective_from, await book.timezone(conn, community)
    ):
        raise ValidationFailed("effective_from is out of range")
    for attempt in range(5):  # two publishers racing for the same version number
        try:
            async with conn.transaction():  # the version and its event, or neither
                row = await store.insert_rule_set(
                    conn, community, document, source, media_type, effective_from, actor
                )
                await webhooks.emit(conn, community, [_published(row, actor)])
            break
        except asyncpg.UniqueViolationError:
            if attempt == 4:
                raise
    book.forget(community)
    return Published(
        version=row["version"], effective_from=row["effective_from"], created_at=row["created_at"]
    )


def _published(row: Any, actor: str | None) -> webhooks.Event:
    data = {
        "version": row["version"],
        "effective_from": row["effective_from"],
        "created_at": row["created_at"],
        "actor": actor,
    }
    return ("rule_set.published", data, None, None)


def _postings(d: Decision, member: str, amount: int) -> tuple[Posting, ...]:
    asset: Asset = d.asset
    account = member_address(member, asset)
    system = f"system:{'issuance' if asset == 'points' else 'timebank'}:{asset}"
    if d.kind == "deduct":
        system = f"system:penalties:{asset}"
        return (Posting(source=account, destination=system, asset=asset, amount=amount),)
    return (Posting(source=system, destination=account, asset=asset, amount=amount),)


def transaction_for(
    client_id: str,
    member: str,
    event_id: str | None,
    d: Decision,
    applied: int,
    actor: str | None,
    earned_at: datetime | None = None,
) -> NewTransaction:
    """The transaction that carries out decision `d` for `member`, explained; an
    award's lot is earned when its event occurred (`earned_at`)."""
    return NewTransaction(
        client_id=client_id,
        postings=_postings(d, member, applied),
        request_hash=b"rule",
        kind="award" if d.kind == "award" else "deduction",
        reason=d.reason,
        rule_id=d.rule_id,
        rule_version=d.rule_version,
        event_id=event_id,
        actor=actor,
        metadata={"requested": d.requested, "applied": applied},
        lot_earned_at=earned_at if d.kind == "award" else None,
        lot_expires=d.expires,
    )


def event_tx_id(event_id: str, rule_id: str) -> str:
    """The transaction a rule posts for an event. The `event:` prefix keeps it apart
    from every other id the service derives (`offset:<id>`, `<member>:opening`,
    `<id>:reversal`, …), whatever ids clients choose for events."""
    return f"event:{event_id}:{rule_id}"


def _transaction(event: EventInput, d: Decision, applied: int, actor: str | None) -> NewTransaction:
    tx_id = event_tx_id(event.id, d.rule_id)
    return transaction_for(tx_id, event.member_id, event.id, d, applied, actor, event.occurred_at)


def clamp(decisions: list[Decision], room: int) -> list[tuple[Decision, int, str | None]]:
    """What each decision may post: deductions of points stop at the floor (`room` is
    how far above it the member stands, less what is held). Pure."""
    out: list[tuple[Decision, int, str | None]] = []
    for d in decisions:
        applied, why = d.amount, d.why
        if d.kind == "deduct" and d.asset == "points" and d.amount > 0:
            applied = min(d.amount, max(0, room))
            if applied < d.amount:
                why = f"the floor allows {applied} of {d.amount}"
            room -= applied
        elif d.kind == "award" and d.asset == "points":
            room += applied
        out.append((d, applied, why))
    return out


async def ingest(
    conn: Conn,
    book: RuleBook,
    community: str,
    event: EventInput,
    request_hash: bytes,
    actor: str | None,
    deadline: Deadline | None = None,
) -> tuple[EventResult, bool]:
    """Runs the rules in force now on one event, atomically and once: the use case,
    its own unit of work (`record_event` does the work inside another's)."""
    return await unit_of_work(
        conn, lambda: record_event(conn, book, community, event, request_hash, actor, deadline)
    )


async def record_event(
    conn: Conn,
    book: RuleBook,
    community: str,
    event: EventInput,
    request_hash: bytes,
    actor: str | None,
    deadline: Deadline | None = None,
) -> tuple[EventResult, bool]:
    """The periods its caps and statistics count in are decided by `occurred_at`.
    Three round trips, inside the caller's transaction: record and lock, write the
    postings, count and store. Evaluation counts against `deadline` (a batch shares
    one; by default, its own)."""
    active = await book.active(conn, community)
    tz = await book.timezone(conn, community)
    params = active.rule_set.to_params()  # the version the engine runs, not a second look
    values = (
        event.id,
        event.type,
        event.member_id,
        event.occurred_at,
        event.attributes,
        request_hash,
        actor,
    )
    keys = countable_keys(event.occurred_at, tz)
    try:
        begun = await store.begin_event(conn, community, values, keys or [])
    except asyncpg.ForeignKeyViolationError as err:
        raise NotFound(f"no member {event.member_id!r} in community {community!r}") from err
    if begun.locked is None:
        return await _replay(conn, community, event.id, request_hash, begun), True
    if keys is None:
        raise ValidationFailed("occurred_at is out of range")
    clock = deadline or Deadline()
    args = (begun.locked, active, tz, params, clock)
    return await _process(conn, community, event, actor, *args), False


async def _replay(
    conn: Conn, community: str, event_id: str, request_hash: bytes, begun: store.Begun
) -> EventResult:
    """The answer the event's first request got, rendered from its record and its
    transactions as they were created."""
    assert begun.stored_result is not None
    if begun.stored_hash != request_hash:
        raise IdempotencyConflict(
            f"event {event_id!r} was recorded with different fields; use a new id"
        )
    record = msgspec.convert(begun.stored_result, EventRecord)
    ids = [d.transaction_id for d in record.decisions if d.transaction_id is not None]
    found = await ledger.get_transactions(conn, community, ids)
    return _result(record, [transaction_out(ledger.creation_view(found[i])) for i in ids])


def _result(record: EventRecord, transactions: list[TransactionOut]) -> EventResult:
    return EventResult(
        id=record.id,
        type=record.type,
        member=record.member,
        occurred_at=record.occurred_at,
        rule_version=record.rule_version,
        transactions=transactions,
        decisions=record.decisions,
        note=record.note,
    )


async def _process(
    conn: Conn,
    community: str,
    event: EventInput,
    actor: str | None,
    locked: store.Locked,
    active: ActiveRules,
    tz: str,
    params: RuleParams,
    deadline: Deadline,
) -> EventResult:
    with deadline.running():
        decisions = evaluate(active.compiled, event, locked.stats, tz, deadline.check)
    room = locked.posted - locked.held - params.floor
    views, transactions = await _post(conn, community, event, clamp(decisions, room), params, actor)
    record = EventRecord(
        id=event.id,
        type=event.type,
        member=event.member_id,
        occurred_at=event.occurred_at,
        rule_version=active.version,
        decisions=views,
        note=None if decisions else f"no rule of version {active.version} reacts to {event.type!r}",
    )
    await store.finish_event(
        conn,
        community,
        event.id,
        event.member_id,
        msgspec.to_builtins(record),
        active.version,
        counts(views, decisions, current_keys(event.occurred_at, tz)),
    )
    return _result(record, transactions)


async def _post(
    conn: Conn,
    community: str,
    event: EventInput,
    verdicts: list[tuple[Decision, int, str | None]],
    params: RuleParams,
    actor: str | None,
) -> tuple[list[DecisionView], list[TransactionOut]]:
    """Writes every positive verdict in one round trip; explains every verdict."""
    to_write = [_transaction(event, d, n, actor) for d, n, _ in verdicts if n > 0]
    done = await ledger.write_new(conn, community, to_write, params, mode="floor")
    by_rule = {tx.rule_id: (tx, c) for tx, c in zip(to_write, done, strict=True)}
    views: list[DecisionView] = []
    transactions: list[TransactionOut] = []
    for d, applied, why in verdicts:
        tx, c = by_rule.get(d.rule_id, (None, None))
        ok = tx is not None and c is not None and c.outcome == Outcome.CREATED
        if ok:
            assert tx is not None and c is not None
            transactions.append(transaction_out(ledger.written(tx, c, None)))
        skipped = d.skipped or (None if ok else "floor_reached" if applied == 0 else "insufficient")
        views.append(
            DecisionView(
                rule_id=d.rule_id,
                kind=d.kind,
                requested=d.requested,
                applied=applied if ok else 0,
                reason=d.reason,
                skipped=skipped,
                why=why,
                transaction_id=tx.client_id if ok and tx is not None else None,
            )
        )
    return views, transactions


def counts(views: list[DecisionView], decisions: list[Decision], keys: list[str]) -> store.Counts:
    """What to count of what was actually posted: each rule's usage in its period,
    and the member's points earned and deducted at the period `keys`. Pure."""
    posted = [(v, d) for v, d in zip(views, decisions, strict=True) if v.applied > 0]
    points = [(v, d) for v, d in posted if d.asset == "points"]
    return store.Counts(
        rule_ids=[v.rule_id for v, _ in posted],
        period_keys=[d.period_key for _, d in posted],
        amounts=[v.applied for v, _ in posted],
        stat_keys=keys,
        earned=sum(v.applied for v, d in points if d.kind == "award"),
        deducted=sum(v.applied for v, d in points if d.kind == "deduct"),
    )
