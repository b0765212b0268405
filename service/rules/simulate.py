"""Simulation: what events would post under a rule set, against current balances,
writing nothing. Statistics carry forward from one simulated event to the next.

Up to a thousand events are evaluated in one request, so it yields to the event loop
between events and stops with a 422 once its evaluation passes the `Deadline`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec

from service.db import Queryable
from service.errors import ValidationFailed
from service.ledger import reads
from service.rules import store
from service.rules.book import RuleBook
from service.rules.deadline import Deadline
from service.rules.engine import (
    CompiledRuleSet,
    Decision,
    EventInput,
    MemberStats,
    PeriodStats,
    RuleUsage,
    evaluate,
)
from service.rules.periods import countable, current_keys, stat_keys
from service.rules.service import DecisionView, clamp


class SimulatedEvent(msgspec.Struct, kw_only=True):
    id: str
    member: str
    rule_version: int
    decisions: list[DecisionView]
    score_after: int


class _Member(msgspec.Struct, kw_only=True):
    stats: MemberStats
    room: int


def record(
    stats: MemberStats, views: list[DecisionView], keys: list[str], period_keys: dict[str, str]
) -> MemberStats:
    """`stats` after the posted verdicts `views` counted at `keys`. Pure."""
    periods = dict(stats.periods)
    usage = dict(stats.usage)
    score = stats.score
    for v in views:
        if v.applied <= 0:
            continue
        sign = 1 if v.kind == "award" else -1
        score += sign * v.applied
        for key in keys:
            p = periods.get(key) or PeriodStats()
            periods[key] = PeriodStats(
                earned=p.earned + (v.applied if sign > 0 else 0),
                deducted=p.deducted + (v.applied if sign < 0 else 0),
                awards=p.awards + (1 if sign > 0 else 0),
                deductions=p.deductions + (1 if sign < 0 else 0),
            )
        slot = (v.rule_id, period_keys[v.rule_id])
        u = usage.get(slot) or RuleUsage()
        usage[slot] = RuleUsage(amount=u.amount + v.applied, times=u.times + 1)
    return MemberStats(member_id=stats.member_id, score=score, periods=periods, usage=usage)


async def _member(
    conn: Queryable, community: str, member: str, at: datetime, tz: str, floor: int
) -> _Member:
    posted, held = await reads.points_account(conn, community, member)
    stats = await store.member_stats(conn, community, member, posted, stat_keys(at, tz))
    return _Member(stats=stats, room=posted - held - floor)


def _views(decisions: list[Decision], room: int) -> list[DecisionView]:
    """The verdicts as `rules.ingest` would explain them, the floor applied."""
    return [
        DecisionView(
            rule_id=d.rule_id,
            kind=d.kind,
            requested=d.requested,
            applied=applied,
            reason=d.reason,
            skipped=d.skipped or (None if applied else "floor_reached"),
            why=why,
            transaction_id=None,
        )
        for d, applied, why in clamp(decisions, room)
    ]


async def simulate(
    conn: Queryable,
    book: RuleBook,
    community: str,
    events: list[EventInput],
    draft: CompiledRuleSet | None,
    floor: int | None,
) -> list[SimulatedEvent]:
    """What `events` would post, in order, under `draft` (or the versions in force)."""
    tz = await book.timezone(conn, community)
    members: dict[str, _Member] = {}
    out: list[SimulatedEvent] = []
    deadline = Deadline()
    for event in events:
        await asyncio.sleep(0)  # let other requests run between events
        if not countable(event.occurred_at, tz):  # as `rules.ingest` would refuse it
            raise ValidationFailed(f"occurred_at of event {event.id!r} is out of range")
        compiled = draft or (await book.active(conn, community)).compiled
        floor_now = floor if floor is not None else (await book.params(conn, community)).floor
        m = members.get(event.member_id) or await _member(
            conn, community, event.member_id, event.occurred_at, tz, floor_now
        )
        with deadline.running():
            decisions = evaluate(compiled, event, m.stats, tz, deadline.check)
        views = _views(decisions, m.room)
        keys = current_keys(event.occurred_at, tz)
        stats = record(m.stats, views, keys, {d.rule_id: d.period_key for d in decisions})
        room = m.room + stats.score - m.stats.score
        members[event.member_id] = _Member(stats=stats, room=room)
        out.append(
            SimulatedEvent(
                id=event.id,
                member=event.member_id,
                rule_version=compiled.version,
                decisions=views,
                score_after=stats.score,
            )
        )
    return out
