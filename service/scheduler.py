"""APScheduler jobs. They only call services; each is safe to run in many processes.

Every run is counted (`ledger_job_runs_total`, `ledger_job_failures_total`). A run
that meets a database outage is a failure logged as the outage it is (one warning
every few seconds, see `service.outage`), not a traceback a second per job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from service.config import Settings
from service.ledger import reads
from service.ledger import service as ledger
from service.metrics import HOLDS_EXPIRED, JOB_FAILURES, JOB_RUNS, POOL_IN_USE, POOL_MAX, SEAL_LAG
from service.outage import fault_of, report
from service.rules import jobs
from service.rules.book import RuleBook
from service.sessions import service as sessions
from service.webhooks import jobs as webhook_jobs
from service.webhooks import worker as webhook_worker

log = structlog.get_logger(__name__)

POOL_SAMPLE_S: Final = 1.0


async def expire_holds(pool: asyncpg.Pool) -> None:
    voided = await ledger.expire_due(pool)
    if voided:
        HOLDS_EXPIRED.inc(voided)
        log.info("holds_expired", voided=voided)


async def seal_chains(pool: asyncpg.Pool) -> None:
    await ledger.seal_all(pool)
    SEAL_LAG.set(await reads.seal_lag_s(pool))
    await webhook_jobs.publish_heads(pool)


async def deliver_webhooks(pool: asyncpg.Pool, allow_private: bool) -> None:
    await webhook_worker.deliver_due(pool, allow_private=allow_private)


async def notify_expiring(pool: asyncpg.Pool, book: RuleBook) -> None:
    await webhook_jobs.notify_expiring(pool, book)


async def settle_rules(pool: asyncpg.Pool, book: RuleBook) -> None:
    posted = await jobs.run_all(pool, book)
    if posted:
        log.info("scheduled_postings", posted=posted)


async def purge_sessions(pool: asyncpg.Pool) -> None:
    """Forgets web-app sessions and sign-in links a week past their end (any
    process may run it: deleting what is already gone deletes nothing)."""
    await sessions.purge(pool)


def counted(name: str, job: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """`job`, counted in the job metrics; an outage is logged as one, a bug with
    its traceback. Nothing is raised to APScheduler, which would log each again."""
    runs, failures = JOB_RUNS.labels(name), JOB_FAILURES.labels(name)

    async def run(*args: object) -> None:
        runs.inc()
        try:
            await job(*args)
        except Exception as exc:
            failures.inc()
            fault = fault_of(exc)
            if fault is None:
                log.exception("job_failed", job=name, error=type(exc).__name__)
            else:
                report(exc, fault, f"job {name}")

    return run


async def sample_pool(pool: asyncpg.Pool) -> None:
    """Keeps the pool gauges current (sampled: a gauge update on every acquire
    would cost each request for a number read every 30 s)."""
    POOL_MAX.set(pool.get_max_size())
    while True:
        POOL_IN_USE.set(pool.get_size() - pool.get_idle_size())
        await asyncio.sleep(POOL_SAMPLE_S)


def build_scheduler(pool: asyncpg.Pool, settings: Settings, book: RuleBook) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    Job = Callable[..., Awaitable[None]]
    every: dict[str, tuple[Job, float, list[object]]] = {
        "expire_holds": (expire_holds, settings.expiry_interval_s, [pool]),
        "seal_chains": (seal_chains, settings.seal_interval_s, [pool]),
        "settle_rules": (settle_rules, settings.rules_interval_s, [pool, book]),
        "deliver_webhooks": (deliver_webhooks, 1.0, [pool, settings.webhook_allow_private]),
        "notify_expiring": (notify_expiring, settings.rules_interval_s, [pool, book]),
        "purge_sessions": (purge_sessions, 3600.0, [pool]),
    }
    for name, (job, seconds, args) in every.items():
        scheduler.add_job(
            counted(name, job),
            "interval",
            seconds=seconds,
            args=args,
            id=name,
            replace_existing=True,
        )
    return scheduler
