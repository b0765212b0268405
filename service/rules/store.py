"""asyncpg calls of the rules engine, one function per named query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from service.db import q
from service.ledger.store import Conn, Queryable
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


async def insert_event(conn: Conn, community: str, values: Sequence[Any]) -> bool:
    return await conn.fetchval(q("event_insert"), community, *values) is not None


async def get_event(conn: Queryable, community: str, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("event_get"), community, event_id)


async def set_event_result(
    conn: Conn, community: str, event_id: str, result: dict[str, Any], version: int
) -> None:
    await conn.execute(q("event_set_result"), community, event_id, result, version)


async def lock_member(conn: Conn, community: str, member: str) -> asyncpg.Record | None:
    """Locks a member's accounts until the transaction ends, in the order every writer
    takes them; the points account's `posted` and `held`, or None if no such member."""
    return await conn.fetchrow(q("member_lock"), community, member)


async def member_stats(
    conn: Queryable, community: str, member: str, score: int, keys: list[str]
) -> MemberStats:
    """What the engine may read of a member at the period `keys`."""
    periods = {
        r["period_key"]: PeriodStats(
            earned=r["earned"],
            deducted=r["deducted"],
            awards=r["awards"],
            deductions=r["deductions"],
        )
        for r in await conn.fetch(q("member_stats_get"), community, member, keys)
    }
    usage = {
        (r["rule_id"], r["period_key"]): RuleUsage(amount=r["amount"], times=r["times"])
        for r in await conn.fetch(q("rule_usage_get"), community, member, keys)
    }
    return MemberStats(member_id=member, score=score, periods=periods, usage=usage)


async def count_usage(
    conn: Conn,
    community: str,
    member: str,
    rule_ids: list[str],
    period_keys: list[str],
    amounts: list[int],
) -> None:
    await conn.execute(q("rule_usage_add"), community, member, rule_ids, period_keys, amounts)


async def count_stats(
    conn: Conn, community: str, member: str, keys: list[str], *, earned: int, deducted: int
) -> None:
    await conn.execute(
        q("member_stats_add"),
        community,
        member,
        keys,
        earned,
        deducted,
        1 if deducted else 0,
        1 if earned else 0,
    )


async def claim_job(conn: Conn, community: str, job: str, period_key: str) -> bool:
    return await conn.fetchval(q("job_run_claim"), community, job, period_key) is not None


async def jobs_done(conn: Queryable, community: str, job: str, keys: list[str]) -> set[str]:
    return {r["period_key"] for r in await conn.fetch(q("job_run_done"), community, job, keys)}


async def member_ids(conn: Queryable, community: str, after: str, limit: int) -> list[str]:
    return [r["id"] for r in await conn.fetch(q("member_ids_page"), community, after, limit)]
