"""Reversing a transaction: the ledger's reversal and, when a rule posted the
transaction, what it counted taken back out of the member's statistics and the
rule's usage in the same statement (SPEC section 9): the cap frees up and the
leaderboard drops it.

A rule's transaction was counted, in the database transaction that posted it, in the
rule's usage for its cap period and (points only) in the member's statistics at the
day, week, month and year of the instant it counted at: the event's `occurred_at`
(`rules.service.record_event`), or the last instant of the period a scheduled rule
settled (`rules.jobs`). The keys are worked out again, with the engine's own
functions, from what was stored when it was counted and never changes: the rule-set
version the transaction names, the event's `occurred_at` (or the period the id of a
scheduled rule's transaction names) and the community's time zone. Only the write
that creates the reversal subtracts, so a replay or a concurrent repeat subtracts
nothing; the reversal's metadata says what it took out (`uncounted`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from service.db import Conn, unit_of_work
from service.ledger import service as ledger
from service.ledger.model import Posting, RuleParams, Transaction
from service.rules import store
from service.rules.book import RuleBook
from service.rules.engine import CompiledRule, CompiledRuleSet, event_period, settled_period
from service.rules.periods import Period, current_keys, period_from_key
from service.rules.service import EventRecord

_ENGINE_KIND = {"award": "award", "deduction": "deduct"}  # transaction kind -> rule kind


async def reverse_transaction(
    conn: Conn,
    book: RuleBook,
    community: str,
    client_id: str,
    params: RuleParams,
    actor: str | None,
) -> tuple[Transaction, bool]:
    """The use case: reads that plan it, then one statement that writes the reversal
    and uncounts under the member's lock, so no BEGIN and COMMIT around it."""
    return await unit_of_work(
        conn, lambda: reverse(conn, book, community, client_id, params, actor), atomic=False
    )


async def reverse(
    conn: Conn,
    book: RuleBook,
    community: str,
    client_id: str,
    params: RuleParams,
    actor: str | None,
) -> tuple[Transaction, bool]:
    """Writes the transaction that undoes a posted one, at most once (as
    `ledger.reverse`), taking out what it counted if a rule posted it."""
    tx = await ledger.get_transaction(conn, community, client_id)
    reversal = await ledger.reversal_for(conn, community, tx, actor)
    uncount = await _counted(conn, book, community, tx)
    if uncount is None:
        return await ledger.create(
            conn, community, reversal, params, mode="floor", reversal_of=tx.client_id
        )
    reversal = msgspec.structs.replace(reversal, metadata=uncounted(uncount))
    document = ledger.write_document(reversal, params, mode="floor")
    row = await store.reverse_counted(conn, community, document, uncount)
    return await ledger.settle_row(conn, community, reversal, row, tx.client_id)


def uncounted(u: store.Uncount) -> dict[str, Any]:
    """The reversal's metadata: the periods whose counts it took the original out of."""
    return {"uncounted": {"usage": u.period_key, "statistics": u.stat_keys}}


async def _counted(
    conn: Conn, book: RuleBook, community: str, tx: Transaction
) -> store.Uncount | None:
    """What `tx` counted, or None if no rule posted it (nothing was counted)."""
    if tx.rule_id is None or tx.rule_version is None or tx.kind not in _ENGINE_KIND:
        return None
    active = await book.version(conn, community, tx.rule_version)
    rule = None if active is None else find_rule(active.compiled, tx.rule_id)
    if active is None or rule is None:
        raise AssertionError(f"{tx.client_id!r} names a rule that was never published")
    tz = await book.timezone(conn, community)
    if tx.event_id is None:
        return scheduled_uncount(tx, rule, tz)
    row = await store.event_counted(conn, community, tx.event_id)
    if row is None or row["result"] is None:
        raise AssertionError(f"{tx.client_id!r} names event {tx.event_id!r}, never recorded")
    record = msgspec.convert(row["result"], EventRecord)
    return event_uncount(tx, rule, active.compiled, row["occurred_at"], record, tz)


def find_rule(compiled: CompiledRuleSet, rule_id: str) -> CompiledRule | None:
    """Rule `rule_id` of a version, whatever triggers it."""
    rules = [*compiled.scheduled.values(), *(r for rs in compiled.by_event.values() for r in rs)]
    return next((r for r in rules if r.rule.id == rule_id), None)


def event_uncount(
    tx: Transaction,
    rule: CompiledRule,
    compiled: CompiledRuleSet,
    occurred_at: datetime,
    record: EventRecord,
    tz: str,
) -> store.Uncount:
    """What `tx`, which `rule` posted for an event at `occurred_at` (with `record`),
    counted, as `rules.service.counts` counted it. Pure."""
    kind = _ENGINE_KIND[tx.kind]
    siblings = [
        d.transaction_id
        for d in record.decisions
        if d.transaction_id is not None
        and d.transaction_id != tx.client_id
        and d.kind == kind
        and _asset(compiled, d.rule_id) == "points"
    ]
    period = event_period(rule, occurred_at, tz)
    return _uncount(tx, period, current_keys(occurred_at, tz), siblings)


def scheduled_uncount(tx: Transaction, rule: CompiledRule, tz: str) -> store.Uncount:
    """What `tx`, which scheduled `rule` posted for the period its id names
    (`<rule>:<period>:<member>`, as the jobs name it), counted. Pure."""
    member, _ = _member_posting(tx)
    key = tx.client_id.removeprefix(f"{rule.rule.id}:").removesuffix(f":{member}")
    if tx.client_id != f"{rule.rule.id}:{key}:{member}":
        raise AssertionError(f"{tx.client_id!r} does not name the period a rule settled")
    settled = period_from_key(key, tz)
    return _uncount(tx, settled_period(rule, settled), settled_keys(settled), [])


def settled_keys(period: Period) -> list[str]:
    """Where the jobs count a scheduled rule's amount for the settled `period` in the
    member's statistics: at the period's last instant, so that a month's award lands
    in that month (`rules.jobs._settle_member` computes the same)."""
    return current_keys(period.end - timedelta(microseconds=1), period.tz)


def _asset(compiled: CompiledRuleSet, rule_id: str) -> str | None:
    found = find_rule(compiled, rule_id)
    return None if found is None else found.rule.asset


def _member_posting(tx: Transaction) -> tuple[str, Posting]:
    """The member a rule's transaction posted to, and its one posting."""
    [posting] = tx.postings
    address = posting.destination if tx.kind == "award" else posting.source
    return address.removeprefix("member:").removesuffix(f":{posting.asset}"), posting


def _uncount(
    tx: Transaction, period: Period, keys: list[str], siblings: list[str]
) -> store.Uncount:
    assert tx.rule_id is not None
    member, posting = _member_posting(tx)
    points = posting.asset == "points"
    return store.Uncount(
        member=member,
        rule_id=tx.rule_id,
        period_key=period.key,
        amount=posting.amount,
        stat_keys=keys if points else [],
        earned=posting.amount if points and tx.kind == "award" else 0,
        deducted=posting.amount if points and tx.kind == "deduction" else 0,
        siblings=siblings if points else [],
    )
