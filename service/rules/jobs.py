"""Scheduled rules and expiry of lots: run by the scheduler, safe to run anywhere.

Each posting a job makes has a client id built from (rule, period, member), so a
job run twice, or by two processes at once, posts nothing twice: the second writer
gets the first one's transaction back and counts nothing. A period is marked done
in `job_runs` only after every member was visited, so a job that was down catches
up on every period that ended meanwhile (at most `MAX_CATCH_UP` per run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import structlog

from service import setup
from service.db import Conn, unit_of_work
from service.i18n import system_reason
from service.ledger import service as ledger
from service.ledger.model import Asset, NewTransaction, Posting, RuleParams, member_address
from service.rules import store
from service.rules.book import ActiveRules, RuleBook
from service.rules.engine import evaluate_scheduled
from service.rules.periods import (
    Period,
    current_keys,
    ended_between,
    stat_keys,
)
from service.rules.service import clamp, transaction_for

log = structlog.get_logger(__name__)
MAX_CATCH_UP = 24
PAGE = 500


async def run_all(pool: asyncpg.Pool, book: RuleBook, now: datetime | None = None) -> int:
    """Every community's scheduled rules and expiry; returns how many postings were made."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        communities = await setup.community_ids(conn)
    posted = 0
    for community in communities:
        async with pool.acquire() as conn:
            active = await book.active(conn, community, now)
            tz = await book.timezone(conn, community)
        for rule_id in active.compiled.scheduled:
            posted += await _scheduled_rule(pool, community, active, rule_id, tz, now)
        posted += await _expiry(pool, book, community, now)
    return posted


async def _members(pool: asyncpg.Pool, community: str) -> list[str]:
    found: list[str] = []
    async with pool.acquire() as conn:
        while page := await store.member_ids(conn, community, found[-1] if found else "", PAGE):
            found += page
    return found


async def _scheduled_rule(
    pool: asyncpg.Pool, community: str, active: ActiveRules, rule_id: str, tz: str, now: datetime
) -> int:
    kind = active.compiled.scheduled[rule_id].period_kind
    periods = ended_between(kind, active.effective_from, now, tz, limit=MAX_CATCH_UP)
    job = f"rule:{rule_id}"
    async with pool.acquire() as conn:
        done = await store.jobs_done(conn, community, job, [p.key for p in periods])
    posted = 0
    for period in (p for p in periods if p.key not in done):
        for member in await _members(pool, community):
            async with pool.acquire() as conn:
                posted += await unit_of_work(
                    conn,
                    partial(_settle_member, conn, community, active, rule_id, period, member, tz),
                )
        async with pool.acquire() as conn:
            await store.claim_job(conn, community, job, period.key)
        log.info("scheduled_rule_settled", community=community, rule=rule_id, period=period.key)
    return posted


async def _settle_member(
    conn: Conn,
    community: str,
    active: ActiveRules,
    rule_id: str,
    period: Period,
    member: str,
    tz: str,
) -> int:
    locked = await store.lock_member(conn, community, member, stat_keys(period.end, tz))
    if locked is None:
        return 0
    decision = evaluate_scheduled(active.compiled, rule_id, locked.stats, period)
    floor = active.rule_set.floor
    [(d, applied, _)] = clamp([decision], locked.posted - locked.held - floor)
    if applied <= 0:
        return 0
    tx = transaction_for(f"{rule_id}:{period.key}:{member}", member, None, d, applied, None)
    # Under the member's lock and clamped to the floor, only a replay (another run
    # settled it) can stop this write; a refusal raises and fails the job, so the
    # period is not claimed and the next run settles it.
    _, replayed = await ledger.create(
        conn, community, tx, active.rule_set.to_params(), mode="floor"
    )
    if replayed:
        return 0
    points = d.asset == "points"
    counts = store.Counts(
        rule_ids=[rule_id],
        period_keys=[d.period_key],
        amounts=[applied],
        stat_keys=current_keys(period.end - timedelta(microseconds=1), tz),
        earned=applied if points and d.kind == "award" else 0,
        deducted=applied if points and d.kind != "award" else 0,
    )
    await store.count(conn, community, member, counts)
    return 1


async def _expiry(pool: asyncpg.Pool, book: RuleBook, community: str, now: datetime) -> int:
    """Every lot that reached its instant expires: per member, asset and instant one
    posting of exactly what is left of those lots (SPEC section 9)."""
    async with pool.acquire() as conn:
        due = await store.lots_due(conn, community, now)
        language = await book.language(conn, community)
    posted = 0
    for member, asset in due:
        async with pool.acquire() as conn:
            posted += await unit_of_work(
                conn, partial(_expire_member, conn, community, member, asset, now, language)
            )
    return posted


async def _expire_member(
    conn: Conn, community: str, member: str, asset: Asset, now: datetime, language: str
) -> int:
    """Under the member's locks, what its due lots hold, instant by instant (the
    earliest first, as every debit consumes them): a run racing this one, or a
    spend, sees what this one left."""
    if await store.lock_member(conn, community, member, []) is None:
        return 0
    account = member_address(member, asset)
    posted = 0
    for instant, amount, round_ in await store.lots_due_of(conn, community, account, now):
        key = f"expiry:{asset}:{instant.astimezone(UTC):%Y%m%dT%H%M%SZ}:{member}"
        tx = NewTransaction(
            client_id=key if round_ == 0 else f"{key}:{round_ + 1}",
            postings=(
                Posting(
                    source=account,
                    destination=f"system:expired:{asset}",
                    asset=asset,
                    amount=amount,
                ),
            ),
            request_hash=b"expiry",
            kind="expiry",
            reason=system_reason(language, "expiry"),
            metadata={"expires_at": instant.isoformat()},
        )
        _, replayed = await ledger.create(conn, community, tx, RuleParams(), mode="expiry")
        posted += 0 if replayed else 1
    return posted
