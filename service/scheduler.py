"""APScheduler jobs. They only call services; each is safe to run in many processes."""

from __future__ import annotations

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from service.config import Settings
from service.ledger import service as ledger
from service.rules import jobs
from service.rules.book import RuleBook

log = structlog.get_logger(__name__)


async def expire_holds(pool: asyncpg.Pool) -> None:
    voided = await ledger.expire_due(pool)
    if voided:
        log.info("holds_expired", voided=voided)


async def seal_chains(pool: asyncpg.Pool) -> None:
    await ledger.seal_all(pool)


async def settle_rules(pool: asyncpg.Pool, book: RuleBook) -> None:
    posted = await jobs.run_all(pool, book)
    if posted:
        log.info("scheduled_postings", posted=posted)


def build_scheduler(pool: asyncpg.Pool, settings: Settings, book: RuleBook) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    scheduler.add_job(
        expire_holds,
        "interval",
        seconds=settings.expiry_interval_s,
        args=[pool],
        id="expire_holds",
        replace_existing=True,
    )
    scheduler.add_job(
        seal_chains,
        "interval",
        seconds=settings.seal_interval_s,
        args=[pool],
        id="seal_chains",
        replace_existing=True,
    )
    scheduler.add_job(
        settle_rules,
        "interval",
        seconds=settings.rules_interval_s,
        args=[pool, book],
        id="settle_rules",
        replace_existing=True,
    )
    return scheduler
