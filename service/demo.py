"""The demo community `serve --demo` creates: two households, three residents, a few
transactions. Every write carries a fixed client id, so seeding again changes nothing."""

from __future__ import annotations

import asyncpg
import structlog

from service import setup
from service.db import create_pool
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting
from service.rules.book import RuleBook

log = structlog.get_logger(__name__)

COMMUNITY = "demo"
HOUSEHOLDS = (
    ("h-101", "Building 1, Unit 101", "acme-property"),
    ("h-102", "Building 1, Unit 102", "acme-property"),
)
MEMBERS = (("m-1", "h-101", "Li Wei"), ("m-2", "h-101", "Wang Fang"), ("m-3", "h-102", "Zhang Min"))
AWARDS = (
    ("demo-award-1", "m-1", 30, "sorted rubbish all month"),
    ("demo-award-2", "m-2", 15, "volunteered at the clinic"),
)


async def seed_demo(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await _seed(conn)
    finally:
        await pool.close()
    log.info("demo_ready", community=COMMUNITY, members=[m for m, _, _ in MEMBERS])


async def _seed(conn: asyncpg.pool.PoolConnectionProxy) -> None:
    await setup.create_community(conn, COMMUNITY, "Demo Gardens", "Asia/Shanghai", b"demo")
    for ident, address, company in HOUSEHOLDS:
        await setup.create_household(conn, COMMUNITY, ident, address, company, b"demo")
    book = RuleBook()
    params, language = await book.params(conn, COMMUNITY), await book.language(conn, COMMUNITY)
    for ident, household, name in MEMBERS:
        await setup.create_member(
            conn, COMMUNITY, ident, household, name, b"demo", params, language=language
        )
    for client_id, member, amount, reason in AWARDS:
        award = NewTransaction(
            client_id=client_id,
            postings=(
                Posting(
                    source="system:issuance:points",
                    destination=f"member:{member}:points",
                    asset="points",
                    amount=amount,
                ),
            ),
            request_hash=b"demo",
            kind="award",
            reason=reason,
        )
        await ledger.create_transaction(conn, COMMUNITY, award, params)
