"""Pure evaluation of a rule set: an event (or a scheduled period) in, explained decisions out.

The service around it does the I/O: under the member's lock it reads the statistics
and rule usage for `stat_keys(at, tz)`, calls `evaluate` (or `evaluate_scheduled`),
posts every decision whose `amount` is positive (clamping deductions at the floor),
and adds each posted amount to `rule_usage` at `decision.period_key` and to the
member's statistics at `current_keys(...)`. Nothing here awaits, reads a clock or
touches a database.

Statistics are as of before the event: two rules that fire on one event do not see
each other's amounts. The `member.*_this_period` / `*_last_period` variables refer to
the rule's period (its cap's period; `every` for a scheduled rule; a month otherwise),
taken relative to the instant of evaluation: `occurred_at` for an event, the end of
the settled period for a scheduled rule, so there `*_last_period` is the period being
settled and `*_this_period` the one just begun.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from service.ledger.model import Asset
from service.rules import expressions, periods
from service.rules.expressions import EvaluationFailed, Expression
from service.rules.model import Rule, RuleSet, policy_text
from service.rules.periods import Period, PeriodKind, around, local_fixed

DEFAULT_PERIOD: Final[PeriodKind] = "month"

Kind = Literal["award", "deduct"]
SkipCode = Literal["condition_false", "zero_amount", "cap_reached", "evaluation_error"]
Tick = Callable[[], None] | None  # called between rules; a deadline raises from it


class EventInput(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the engine sees it; `occurred_at` must be aware."""

    id: str
    type: str
    member_id: str
    occurred_at: datetime
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class PeriodStats(msgspec.Struct, frozen=True, kw_only=True):
    """What rules gave and took from a member in one period (a `member_stats` row)."""

    earned: int = 0
    deducted: int = 0
    awards: int = 0
    deductions: int = 0


class RuleUsage(msgspec.Struct, frozen=True, kw_only=True):
    """What one rule gave or took from a member in one period (a `rule_usage` row)."""

    amount: int = 0
    times: int = 0


class MemberStats(msgspec.Struct, frozen=True, kw_only=True):
    """The member's numbers an evaluation may read; a missing key counts as zero.

    `periods` is keyed by period key, `usage` by (rule id, period key); fetching the
    keys of `stat_keys(at, tz)` covers every lookup. `score` is the posted balance.
    """

    member_id: str
    score: int = 0
    periods: dict[str, PeriodStats] = msgspec.field(default_factory=dict)
    usage: dict[tuple[str, str], RuleUsage] = msgspec.field(default_factory=dict)

    def period(self, key: str) -> PeriodStats:
        return self.periods.get(key) or _NO_STATS

    def rule(self, rule_id: str, key: str) -> RuleUsage:
        return self.usage.get((rule_id, key)) or _NO_USAGE


_NO_STATS: Final = PeriodStats()
_NO_USAGE: Final = RuleUsage()


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """What one rule decided for one member, always with the reason.

    `requested` is what the rule asked for (0 when its condition was false or it
    failed), `amount` what to post after the cap: post only when it is positive. For a
    deduction, `amount` is before the floor, which the database applies under lock.
    `period_key` is the period the amount counts in for the cap (`rule_usage`).
    `skipped` says why nothing is posted; `why` explains a skip or a reduced amount.
    """

    rule_id: str
    rule_version: int
    asset: Asset
    kind: Kind
    requested: int
    amount: int
    period_key: str
    reason: str
    skipped: SkipCode | None = None
    why: str | None = None
    expires: str | None = None  # the rule's own lot expiry (`policy_text`), if any


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    kind: Kind
    when: Expression | None
    amount: Expression | int
    period_kind: PeriodKind  # what `member.*_this_period` and `period` refer to
    needs: expressions.Needs  # what its expressions read, and so what to convert


@dataclass(frozen=True, slots=True)
class CompiledRuleSet:
    """A rule-set version ready to evaluate; build once per version and cache it."""

    version: int
    rule_set: RuleSet
    by_event: Mapping[str, tuple[CompiledRule, ...]]
    scheduled: Mapping[str, CompiledRule]


def compile_rule_set(rule_set: RuleSet, version: int) -> CompiledRuleSet:
    """Compiles every expression of a validated rule set (raises if one is invalid; the
    cost bounds were checked by validation, and stored versions are not held to them)."""
    by_event: dict[str, list[CompiledRule]] = {}
    scheduled: dict[str, CompiledRule] = {}
    for rule in rule_set.rules:
        compiled = _compile_rule(rule)
        if rule.every is not None:
            scheduled[rule.id] = compiled
        else:
            by_event.setdefault(rule.on or "", []).append(compiled)
    events = {event_type: tuple(rules) for event_type, rules in by_event.items()}
    return CompiledRuleSet(version=version, rule_set=rule_set, by_event=events, scheduled=scheduled)


def _compile_rule(rule: Rule) -> CompiledRule:
    scheduled = rule.every is not None
    # The rule set was validated (bounded and probed) before it reached the engine.
    options: dict[str, Any] = {"scheduled": scheduled, "event_type": rule.on or "", "checked": True}
    when = expressions.compile_expression(rule.when, "when", **options) if rule.when else None
    amount: Expression | int
    if isinstance(rule.amount, str):
        amount = expressions.compile_expression(rule.amount, "amount", **options)
    else:
        amount = rule.amount
    period_kind = rule.cap.period if rule.cap and not scheduled else rule.every or DEFAULT_PERIOD
    parts = [e.needs for e in (when, amount) if isinstance(e, Expression)]
    return CompiledRule(
        rule=rule,
        kind=rule.kind,
        when=when,
        amount=amount,
        period_kind=period_kind,
        needs=expressions.merge_needs(*parts),
    )


def evaluate(
    compiled: CompiledRuleSet, event: EventInput, stats: MemberStats, tz: str, tick: Tick = None
) -> list[Decision]:
    """One decision per rule `on` this event's type, in document order (possibly none)."""
    rules = compiled.by_event.get(event.type, ())
    local = local_fixed(event.occurred_at, tz)
    event_map = event.attributes | {"id": event.id, "type": event.type, "occurred_at": local}
    decisions = []
    for rule in rules:
        if tick is not None:
            tick()
        current, last = around(rule.period_kind, event.occurred_at, tz)
        context = _bind(rule, {"event": event_map}, stats, current, current, last)
        decisions.append(_decide(compiled.version, rule, context, stats, current))
    return decisions


def evaluate_scheduled(
    compiled: CompiledRuleSet, rule_id: str, stats: MemberStats, period: Period
) -> Decision:
    """The decision of scheduled rule `rule_id` for one member and a finished `period`.

    `period` is the period being settled (kind = the rule's `every`); its key is the
    natural idempotency key of the run. A cap counts in the cap period containing
    `period.start`. Raises KeyError for an unknown rule, ValueError for a wrong kind.
    """
    rule = compiled.scheduled[rule_id]
    if period.kind != rule.period_kind:
        raise ValueError(f"rule {rule_id!r} runs every {rule.period_kind}, not {period.kind}")
    context = _bind(rule, {}, stats, periods.following(period), period)
    return _decide(compiled.version, rule, context, stats, settled_period(rule, period))


def event_period(rule: CompiledRule, occurred_at: datetime, tz: str) -> Period:
    """The period `rule`'s amount for an event at `occurred_at` counts in for its cap
    (`rule_usage`): the one `evaluate` reads as `*_this_period`."""
    return around(rule.period_kind, occurred_at, tz)[0]


def settled_period(rule: CompiledRule, period: Period) -> Period:
    """The period scheduled `rule`'s amount for the settled `period` counts in for its
    cap: the cap period containing the start of `period`, else `period` itself."""
    cap = rule.rule.cap
    return periods.period_of(cap.period, period.start, period.tz) if cap else period


def _bind(
    rule: CompiledRule,
    variables: dict[str, Any],
    stats: MemberStats,
    current: Period,
    period: Period,
    last: Period | None = None,
) -> expressions.Bindings:
    """Converts what the rule's expressions read: `member` relative to `current`."""
    selected: dict[str, Any] = {}
    for root, fields in rule.needs.items():
        if root == "member":
            value = _member_map(rule.rule.id, stats, current, last)
        elif root == "period":
            value = _period_map(period)
        else:
            value = variables[root]
        selected[root] = expressions.select(value, fields)
    return expressions.Bindings(selected)


def _member_map(
    rule_id: str, stats: MemberStats, current: Period, last: Period | None = None
) -> dict[str, Any]:
    member: dict[str, Any] = {"id": stats.member_id, "score": stats.score}
    for which, key in (("this", current.key), ("last", (last or periods.previous(current)).key)):
        totals, usage = stats.period(key), stats.rule(rule_id, key)
        member |= {
            f"points_earned_{which}_period": totals.earned,
            f"points_deducted_{which}_period": totals.deducted,
            f"awards_{which}_period": totals.awards,
            f"deductions_{which}_period": totals.deductions,
            f"rule_points_{which}_period": usage.amount,
            f"rule_times_{which}_period": usage.times,
        }
    return member


def _period_map(period: Period) -> dict[str, Any]:
    return {"kind": period.kind, "key": period.key, "start": period.start, "end": period.end}


def _decide(
    version: int,
    compiled: CompiledRule,
    context: expressions.Bindings,
    stats: MemberStats,
    counted: Period,
) -> Decision:
    rule = compiled.rule
    base = Decision(
        rule_id=rule.id,
        rule_version=version,
        asset=rule.asset,
        kind=compiled.kind,
        requested=0,
        amount=0,
        period_key=counted.key,
        reason=rule.reason,
        expires=None if rule.expires is None else policy_text(rule.expires),
    )
    try:
        if compiled.when and not expressions.evaluate_condition(compiled.when, context):
            why = f"condition `{compiled.when.source}` is false"
            return msgspec.structs.replace(base, skipped="condition_false", why=why)
        requested = _requested(compiled, context)
    except EvaluationFailed as exc:
        return msgspec.structs.replace(base, skipped="evaluation_error", why=str(exc))
    if requested <= 0:
        why = f"amount `{rule.amount}` evaluated to {requested}"
        return msgspec.structs.replace(base, skipped="zero_amount", why=why)
    base = msgspec.structs.replace(base, requested=requested, amount=requested)
    return _capped(base, rule, stats.rule(rule.id, counted.key).amount)


def _requested(compiled: CompiledRule, context: expressions.Bindings) -> int:
    if isinstance(compiled.amount, int):
        return compiled.amount
    return expressions.evaluate_amount(compiled.amount, context)


def _capped(decision: Decision, rule: Rule, used: int) -> Decision:
    """Applies the cap: at most `cap.max - used` in the decision's period."""
    if rule.cap is None:
        return decision
    left = max(0, rule.cap.max - used)
    if left >= decision.requested:
        return decision
    cap = f"cap {rule.cap.max} per {rule.cap.period} ({decision.period_key}), {used} used"
    if left == 0:
        return msgspec.structs.replace(decision, amount=0, skipped="cap_reached", why=cap)
    why = f"{cap}: reduced from {decision.requested} to {left}"
    return msgspec.structs.replace(decision, amount=left, why=why)
