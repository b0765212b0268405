"""Replay: the community's recorded events of a range re-evaluated under a draft rule
set (or the version in force), writing nothing, and per member what those events
posted in points, what they would post, and the difference.

What it models (docs/rules.md, "Replaying a draft", says the same for operators):

- the events whose `occurred_at` lies in `[from, to)`, in the order they were
  recorded, each under the draft (not under the version it ran under);
- each member's score at each event: its posted points balance just before that
  event was recorded, plus what the draft has changed so far for it in the replay
  (so redemptions, offsets, expiries and manual transactions between the events stand
  as they happened); the floor applies to that score, with nothing held;
- the statistics and cap usage the rules read: what the ledger counts now in those
  periods, less what the replayed events still count there (their own postings that
  were not reversed), plus what the draft posted for the replayed events before it.

`posted` is what the events' rules posted in points when they were recorded, before
any reversal; `reversed` is what reversals of those transactions took back since.
Minutes are not counted in the totals (they are not points). At most
`MAX_REPLAY_EVENTS` events; it yields to the event loop between events and shares
one `Deadline` with its evaluation, like a simulation.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from service.db import Queryable
from service.errors import ValidationFailed
from service.rules import store
from service.rules.book import RuleBook
from service.rules.deadline import Deadline
from service.rules.engine import (
    CompiledRule,
    CompiledRuleSet,
    Decision,
    EventInput,
    MemberStats,
    PeriodStats,
    RuleUsage,
    evaluate,
    event_period,
)
from service.rules.periods import current_keys, stat_keys
from service.rules.service import clamp

MAX_REPLAY_EVENTS: Final = 20_000
MAX_REPLAY_DAYS: Final = 366


class ReplayMember(msgspec.Struct, kw_only=True):
    """One member's part of a replay, in points: awards positive, deductions negative."""

    member: str
    name: str | None
    events: int
    posted: int
    reversed: int
    simulated: int
    difference: int


class ReplayTotals(msgspec.Struct, kw_only=True):
    posted: int
    reversed: int
    simulated: int
    difference: int
    gained: int  # members whose difference is positive
    lost: int  # members whose difference is negative


class Replay(msgspec.Struct, kw_only=True):
    """What a replay of `[from, to)` found. `rule_version` is the version in force that
    was replayed, null for a draft."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    rule_version: int | None
    events: int
    members: list[ReplayMember]
    totals: ReplayTotals


class _Posting(msgspec.Struct, kw_only=True):
    """A member-side entry of a transaction an event's rule posted."""

    rule_id: str
    asset: str
    amount: int  # signed: credits to the member positive
    reversed: bool


class _Row(msgspec.Struct, kw_only=True):
    id: str
    type: str
    member_id: str
    occurred_at: datetime
    attributes: dict[str, Any]
    rule_version: int | None
    name: str | None
    postings: list[_Posting]
    balance_before: int


class _Tally(msgspec.Struct, kw_only=True):
    name: str | None
    events: int = 0
    posted: int = 0
    reversed: int = 0
    simulated: int = 0


# A member's counters: period key -> [earned, deducted, awards, deductions], and
# period key -> rule id -> [amount, times]. Mutable during one replay only.
_Periods = dict[str, list[int]]
_Usage = dict[str, dict[str, list[int]]]


def check_range(start: datetime, end: datetime) -> None:
    """`[start, end)` as a replay takes it: aware, ordered, at most a year and a day."""
    for field, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise ValidationFailed(
                f"replay.{field} needs a UTC offset, e.g. 2026-11-01T00:00:00+08:00"
            )
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValidationFailed(f"replay.{field} is out of range") from None
    if start >= end:
        raise ValidationFailed("replay.from must be before replay.to")
    if end - start > timedelta(days=MAX_REPLAY_DAYS):
        raise ValidationFailed(
            f"a replay covers at most {MAX_REPLAY_DAYS} days; replay.from and replay.to"
            f" are {(end - start).days} days apart"
        )


async def _rows(conn: Queryable, community: str, start: datetime, end: datetime) -> list[_Row]:
    """The events of the range, in one query; more than the limit is a 422."""
    found = await store.replay_events(conn, community, start, end, MAX_REPLAY_EVENTS + 1)
    if len(found) > MAX_REPLAY_EVENTS:
        raise ValidationFailed(
            f"a replay takes at most {MAX_REPLAY_EVENTS:,} events and this range holds more;"
            " replay a shorter range"
        )
    return [msgspec.convert(dict(r), _Row) for r in found]


async def _counters(
    conn: Queryable, community: str, members: list[str], keys: list[str]
) -> tuple[dict[str, _Periods], dict[str, _Usage]]:
    periods: dict[str, _Periods] = defaultdict(dict)
    usage: dict[str, _Usage] = defaultdict(dict)
    for r in await store.replay_stats(conn, community, members, keys):
        if r["rule_id"] is None:
            periods[r["member_id"]][r["period_key"]] = [
                r["earned"],
                r["deducted"],
                r["awards"],
                r["deductions"],
            ]
        else:
            by_rule = usage[r["member_id"]].setdefault(r["period_key"], {})
            by_rule[r["rule_id"]] = [r["earned"], r["awards"]]
    return periods, usage


def _add_period(periods: _Periods, keys: list[str], earned: int, deducted: int, sign: int) -> None:
    """Counts (sign 1) or uncounts (-1) one event's points at `keys`, as
    `rules_count` does: one award (deduction) per event that earned (lost) any."""
    if earned <= 0 and deducted <= 0:
        return
    for key in keys:
        p = periods.setdefault(key, [0, 0, 0, 0])
        p[0] = max(0, p[0] + sign * earned)
        p[1] = max(0, p[1] + sign * deducted)
        p[2] = max(0, p[2] + sign * (1 if earned > 0 else 0))
        p[3] = max(0, p[3] + sign * (1 if deducted > 0 else 0))


def _add_usage(usage: _Usage, rule_id: str, key: str, amount: int, sign: int) -> None:
    u = usage.setdefault(key, {}).setdefault(rule_id, [0, 0])
    u[0] = max(0, u[0] + sign * amount)
    u[1] = max(0, u[1] + sign)


async def _uncount_recorded(
    conn: Queryable,
    book: RuleBook,
    community: str,
    tz: str,
    rows: list[_Row],
    periods: dict[str, _Periods],
    usage: dict[str, _Usage],
) -> None:
    """Takes out of the counters what the replayed events still count: each posting
    not reversed, at the period its rule (of the version the event ran under)
    counted it in."""
    for row in rows:
        standing = [p for p in row.postings if not p.reversed]
        if not standing:
            continue
        rules: dict[str, CompiledRule] = {}
        if row.rule_version is not None:
            version = await book.version(conn, community, row.rule_version)
            if version is not None:
                rules = {r.rule.id: r for r in version.compiled.by_event.get(row.type, ())}
        for p in standing:
            rule = rules.get(p.rule_id)
            if rule is not None:
                key = event_period(rule, row.occurred_at, tz).key
                _add_usage(usage[row.member_id], p.rule_id, key, abs(p.amount), -1)
        points = [p.amount for p in standing if p.asset == "points"]
        earned = sum(a for a in points if a > 0)
        deducted = -sum(a for a in points if a < 0)
        keys = current_keys(row.occurred_at, tz)
        _add_period(periods[row.member_id], keys, earned, deducted, -1)


def _stats(
    member: str, score: int, periods: _Periods, usage: _Usage, keys: list[str]
) -> MemberStats:
    """What the engine may read of a member at the period `keys`."""
    return MemberStats(
        member_id=member,
        score=score,
        periods={
            k: PeriodStats(earned=p[0], deducted=p[1], awards=p[2], deductions=p[3])
            for k in keys
            if (p := periods.get(k)) is not None
        },
        usage={
            (rule, k): RuleUsage(amount=u[0], times=u[1])
            for k in keys
            for rule, u in usage.get(k, {}).items()
        },
    )


def _count_simulated(
    verdicts: list[tuple[Decision, int, str | None]],
    periods: _Periods,
    usage: _Usage,
    keys: list[str],
) -> int:
    """Counts what the draft would post for one event; its points, signed."""
    earned = deducted = 0
    for d, applied, _ in verdicts:
        if applied <= 0:
            continue
        _add_usage(usage, d.rule_id, d.period_key, applied, 1)
        if d.asset == "points":
            if d.kind == "award":
                earned += applied
            else:
                deducted += applied
    _add_period(periods, keys, earned, deducted, 1)
    return earned - deducted


async def replay(
    conn: Queryable,
    book: RuleBook,
    community: str,
    start: datetime,
    end: datetime,
    draft: CompiledRuleSet | None,
    floor: int | None,
) -> Replay:
    """The events recorded for `[start, end)` re-evaluated under `draft` (or the
    version in force now, with its floor); writes nothing."""
    check_range(start, end)
    tz = await book.timezone(conn, community)  # 404 for an unknown community
    active = await book.active(conn, community)
    compiled = draft or active.compiled
    floor_now = floor if floor is not None else active.rule_set.to_params().floor
    rows = await _rows(conn, community, start, end)
    keyed = [(row, stat_keys(row.occurred_at, tz)) for row in rows]
    members = sorted({row.member_id for row in rows})
    all_keys = sorted({k for _, keys in keyed for k in keys})
    periods, usage = await _counters(conn, community, members, all_keys)
    await _uncount_recorded(conn, book, community, tz, rows, periods, usage)

    tallies: dict[str, _Tally] = {}
    shift: dict[str, int] = defaultdict(int)  # simulated minus posted so far, per member
    deadline = Deadline()
    for row, keys in keyed:
        await asyncio.sleep(0)  # let other requests run between events
        m = row.member_id
        score = row.balance_before + shift[m]
        stats = _stats(m, score, periods[m], usage[m], keys)
        event = EventInput(
            id=row.id,
            type=row.type,
            member_id=m,
            occurred_at=row.occurred_at,
            attributes=row.attributes,
        )
        with deadline.running():
            decisions = evaluate(compiled, event, stats, tz, deadline.check)
        verdicts = clamp(decisions, score - floor_now)
        simulated = _count_simulated(
            verdicts, periods[m], usage[m], current_keys(row.occurred_at, tz)
        )
        points = [p for p in row.postings if p.asset == "points"]
        posted = sum(p.amount for p in points)
        tally = tallies.get(m) or _Tally(name=row.name)
        tally.events += 1
        tally.posted += posted
        tally.reversed -= sum(p.amount for p in points if p.reversed)
        tally.simulated += simulated
        tallies[m] = tally
        shift[m] += simulated - posted
    return _answer(start, end, None if draft else active.version, len(rows), tallies)


def _answer(
    start: datetime, end: datetime, version: int | None, events: int, tallies: dict[str, _Tally]
) -> Replay:
    out = [
        ReplayMember(
            member=m,
            name=t.name,
            events=t.events,
            posted=t.posted,
            reversed=t.reversed,
            simulated=t.simulated,
            difference=t.simulated - t.posted,
        )
        for m, t in tallies.items()
    ]
    out.sort(key=lambda r: (-abs(r.difference), r.member))
    totals = ReplayTotals(
        posted=sum(r.posted for r in out),
        reversed=sum(r.reversed for r in out),
        simulated=sum(r.simulated for r in out),
        difference=sum(r.difference for r in out),
        gained=sum(1 for r in out if r.difference > 0),
        lost=sum(1 for r in out if r.difference < 0),
    )
    return Replay(
        from_=start, to=end, rule_version=version, events=events, members=out, totals=totals
    )
