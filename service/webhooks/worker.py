"""Delivery: the scheduler's job that posts due deliveries to their endpoints.

Its state is the database's (`webhook_deliveries`), so a restart loses nothing:
a delivery taken by a process that died is leased, and taken again when the lease
ends. Replicas claim with `FOR UPDATE SKIP LOCKED`, so each attempt is made by one
of them. At least once: a receiver may see an event twice (a lease that ended
while its attempt was still under way), never none.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import asyncpg
import httpx
import structlog

from service.db import on_citus
from service.errors import ValidationFailed
from service.webhooks import store
from service.webhooks.model import ATTEMPT_TIMEOUT_S, FIRST_RETRY_S, retry_delay_s, signature
from service.webhooks.service import event_body
from service.webhooks.targets import check_url

log = structlog.get_logger(__name__)

ENDPOINTS_PER_PASS: Final = 50
# Each endpoint's deliveries of a pass go one after another, in seq order.
PER_ENDPOINT: Final = 10
# Longer than a pass's attempts at one endpoint can take, so that no live attempt
# is taken twice; a process that died leaves its claims for this long.
LEASE_S: Final = PER_ENDPOINT * ATTEMPT_TIMEOUT_S + 30
# A run of the job makes passes while there is work, for about this long.
RUN_S: Final = 30.0


async def deliver_due(pool: asyncpg.Pool, *, allow_private: bool) -> int:
    """Passes while deliveries are due (for up to `RUN_S`); returns how many were
    attempted. Each pass claims what is due and attempts it: endpoints concurrently,
    each endpoint's deliveries one after another, stopping at its first failure."""
    attempted = 0
    deadline = time.monotonic() + RUN_S
    citus = await on_citus(pool)
    async with pool.acquire() as conn:
        rows = await store.claim(conn, ENDPOINTS_PER_PASS, LEASE_S, PER_ENDPOINT, citus=citus)
    if not rows:  # the common case, every second: no HTTP client (its TLS context) made
        return 0
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
        while rows:
            endpoints: dict[tuple[str, str], list[asyncpg.Record]] = {}
            for row in sorted(rows, key=lambda r: r["seq"]):
                endpoints.setdefault((row["community_id"], row["webhook_id"]), []).append(row)
            sent = [_endpoint(pool, http, due, allow_private) for due in endpoints.values()]
            attempted += sum(await asyncio.gather(*sent))
            if time.monotonic() >= deadline:
                break
            async with pool.acquire() as conn:
                rows = await store.claim(
                    conn, ENDPOINTS_PER_PASS, LEASE_S, PER_ENDPOINT, citus=citus
                )
    return attempted


async def _endpoint(
    pool: asyncpg.Pool, http: httpx.AsyncClient, due: list[asyncpg.Record], allow_private: bool
) -> int:
    """One endpoint's claimed deliveries in seq order; after a failure the rest are
    released unattempted, due again after the first retry's pause."""
    for n, row in enumerate(due):
        if not await _attempt(pool, http, row, allow_private):
            rest = [r["id"] for r in due[n + 1 :]]
            if rest:
                async with pool.acquire() as conn:
                    await store.release(conn, row["community_id"], rest, FIRST_RETRY_S)
            return n + 1
    return len(due)


async def _attempt(
    pool: asyncpg.Pool, http: httpx.AsyncClient, row: asyncpg.Record, allow_private: bool
) -> bool:
    """One attempt, recorded; whether it succeeded."""
    community = row["community_id"]
    body = event_body(community, row)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": row["event_id"],
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(row["secret"], row["event_id"], timestamp, body),
    }
    status: int | None = None
    try:
        # Again before every attempt: what a name resolves to can change.
        await check_url(row["url"], allow_private=allow_private)
        response = await http.post(
            row["url"], content=body, headers=headers, timeout=ATTEMPT_TIMEOUT_S
        )
        status = response.status_code
        error = None if 200 <= status < 300 else f"the endpoint answered {status}"
    except ValidationFailed as err:
        error = err.detail
    except httpx.HTTPError as err:
        error = f"{type(err).__name__}: {err}"[:500] or type(err).__name__
    async with pool.acquire() as conn:
        if error is None and status is not None:
            await store.succeeded(conn, community, row["id"], status)
            return True
        delay = retry_delay_s(row["attempts"])
        await store.attempt_failed(conn, community, row["id"], status, error or "", delay)
    log.info(
        "webhook_attempt_failed",
        community=community,
        delivery=row["id"],
        attempt=row["attempts"],
        status=status,
        error=error,
        retry_in_s=delay,
    )
    return False
