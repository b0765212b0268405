"""asyncpg calls of the rules engine, one function per named query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.db import Conn, Queryable, q
from service.ledger.model import Asset
from service.rules.engine import MemberStats, PeriodStats, RuleUsage


async def insert_rule_set(
    conn: Conn,
    community: str,
    document: dict[str, Any],
    source: str,
    media_type: str,
    effective_from: datetime | None,
    actor: str | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        q("rule_set_insert"), community, document, source, media_type, effective_from, actor
    )
    assert row is not None
    return row


async def rule_set_versions(conn: Queryable, community: str) -> list[asyncpg.Record]:
    """Every version a community published, oldest first."""
    return await conn.fetch(q("rule_set_versions"), community)


async def rule_set_source(conn: Queryable, community: str, version: int) -> asyncpg.Record | None:
    """The text version `version` was published as and its media type; None if it
    does not exist."""
    return await conn.fetchrow(q("rule_set_source"), community, version)


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """What rules posted to one member in one go, to be counted (see `count`)."""

    rule_ids: list[str]
    period_keys: list[str]  # each rule's period
    amounts: list[int]
    stat_keys: list[str]  # the periods the member's statistics count in
    earned: int = 0  # points only
    deducted: int = 0


class Locked(msgspec.Struct, frozen=True, kw_only=True):
    """A member whose accounts this transaction holds: its points account's posted
    and held amounts, and the statistics the rules may read."""

    posted: int
    held: int
    stats: MemberStats


class Begun(msgspec.Struct, frozen=True, kw_only=True):
    """An event recorded now (`locked` is its member), or found (`locked` is None)."""

    locked: Locked | None
    stored_hash: bytes | None
    stored_result: dict[str, Any] | None


def _stats(row: asyncpg.Record, member: str, score: int) -> MemberStats:
    """A `rules_stats` value (sql/migrations/0001_schema.sql) as the engine reads it."""
    periods = {
        key: PeriodStats(earned=e, deducted=d, awards=a, deductions=n)
        for key, e, d, a, n in zip(
            row["stat_keys"],
            row["earned"],
            row["deducted"],
            row["awards"],
            row["deductions"],
            strict=True,
        )
    }
    usage = {
        (rule, key): RuleUsage(amount=amount, times=times)
        for rule, key, amount, times in zip(
            row["usage_rules"],
            row["usage_keys"],
            row["usage_amounts"],
            row["usage_times"],
            strict=True,
        )
    }
    return MemberStats(member_id=member, score=score, periods=periods, usage=usage)


def _locked(row: asyncpg.Record, member: str) -> Locked | None:
    if row["posted"] is None:
        return None
    posted: int = row["posted"]
    return Locked(posted=posted, held=row["held"], stats=_stats(row["stats"], member, posted))


async def begin_event(conn: Conn, community: str, values: Sequence[Any], keys: list[str]) -> Begun:
    """Records event `values` (id, type, member, occurred_at, attributes, request
    hash, actor) unless its id exists; when new, locks its member (see `lock_member`)
    and reads its statistics at `keys`. One round trip."""
    row = await conn.fetchrow(q("event_begin"), community, *values, keys)
    assert row is not None
    if not row["inserted"]:
        stored = row["stored_hash"]
        return Begun(
            locked=None,
            stored_hash=None if stored is None else bytes(stored),
            stored_result=row["stored_result"],
        )
    locked = _locked(row, values[2])
    assert locked is not None  # the event row's foreign key proved the member exists
    return Begun(locked=locked, stored_hash=None, stored_result=None)


async def finish_event(
    conn: Conn,
    community: str,
    event_id: str,
    member: str,
    result: dict[str, Any],
    version: int,
    counts: Counts,
) -> None:
    """Counts what the event posted and stores its result for replays."""
    await conn.execute(
        q("event_finish"), community, event_id, member, result, version, *_count_args(counts)
    )


async def lock_member(conn: Conn, community: str, member: str, keys: list[str]) -> Locked | None:
    """Locks a member's accounts until the transaction ends, in the order every writer
    takes them, and reads its statistics at `keys`; None if there is no such member."""
    row = await conn.fetchrow(q("member_lock"), community, member, keys)
    assert row is not None
    return _locked(row, member)


async def member_stats(
    conn: Queryable, community: str, member: str, score: int, keys: list[str]
) -> MemberStats:
    """What the engine may read of a member at the period `keys` (no lock)."""
    stats = await conn.fetchval(q("member_stats_get"), community, member, keys)
    return _stats(stats, member, score)


def _count_args(c: Counts) -> tuple[Any, ...]:
    return (c.rule_ids, c.period_keys, c.amounts, c.stat_keys, c.earned, c.deducted)


async def count(conn: Conn, community: str, member: str, counts: Counts) -> None:
    """Advances each rule's usage in its period and the member's statistics."""
    await conn.execute(q("rules_count"), community, member, *_count_args(counts))


async def claim_job(conn: Conn, community: str, job: str, period_key: str) -> bool:
    return await conn.fetchval(q("job_run_claim"), community, job, period_key) is not None


async def jobs_done(conn: Queryable, community: str, job: str, keys: list[str]) -> set[str]:
    return {r["period_key"] for r in await conn.fetch(q("job_run_done"), community, job, keys)}


async def member_ids(conn: Queryable, community: str, after: str, limit: int) -> list[str]:
    return [r["id"] for r in await conn.fetch(q("member_ids_page"), community, after, limit)]


async def lots_due(conn: Queryable, community: str, now: datetime) -> list[tuple[str, Asset]]:
    """The (member, asset) accounts with lots that reached their instant by `now`."""
    rows = await conn.fetch(q("lots_due"), community, now)
    return [(r["member_id"], r["asset"]) for r in rows]


async def lots_due_of(
    conn: Conn, community: str, account: str, now: datetime
) -> list[tuple[datetime, int, int]]:
    """Under the account's lock: (instant, what its lots there hold, expiries made at
    it already), earliest first."""
    rows = await conn.fetch(q("lots_due_of"), community, account, now)
    return [(r["expires_at"], r["amount"], r["rounds"]) for r in rows]


class Uncount(msgspec.Struct, frozen=True, kw_only=True):
    """What one transaction of a rule counted, to take out again with its reversal
    (see `reverse_counted`): the undo of one rule's part of a `Counts`."""

    member: str
    rule_id: str
    period_key: str  # the rule's period (its usage)
    amount: int
    stat_keys: list[str]  # where the member's statistics counted it (points only)
    earned: int = 0
    deducted: int = 0
    # The event's other transactions that counted in the same award (or deduction).
    siblings: list[str] = msgspec.field(default_factory=list)


async def event_counted(conn: Conn, community: str, event_id: str) -> asyncpg.Record | None:
    """When event `event_id` occurred, and its stored record (`result`)."""
    return await conn.fetchrow(q("event_counted"), community, event_id)


async def reverse_counted(
    conn: Conn, community: str, document: str, uncount: Uncount
) -> asyncpg.Record:
    """Writes the reversal `document` (one ledger write) and, when it is created, takes
    `uncount` out of the rule's usage and the member's statistics. One round trip;
    the ledger's row for the write."""
    u = uncount
    row = await conn.fetchrow(
        q("rules_reverse"),
        community,
        document,
        u.member,
        u.rule_id,
        u.period_key,
        u.amount,
        u.stat_keys,
        u.earned,
        u.deducted,
        u.siblings,
    )
    assert row is not None
    return row


async def replay_events(
    conn: Queryable, community: str, start: datetime, end: datetime, limit: int
) -> list[asyncpg.Record]:
    """The events that occurred in `[start, end)`, as recorded, with what their rules
    posted and the member's balance before each (see `replay_events` in rules.sql)."""
    return await conn.fetch(q("replay_events"), community, start, end, limit)


async def replay_stats(
    conn: Queryable, community: str, members: list[str], keys: list[str]
) -> list[asyncpg.Record]:
    """The statistics and rule usage of `members` at the period `keys`, as stored."""
    return await conn.fetch(q("replay_stats"), community, members, keys)
