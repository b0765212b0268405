"""The demo community `serve --demo` creates: two households, three residents, a few
transactions, the love supermarket's catalogue, hours waiting for an organiser.
Every write carries a fixed client id, so seeding again changes nothing.

Each start also gives the demo's staff (the community office, the till, an
organiser) fresh keys, revoking the previous start's, and prints one-time sign-in
links for them and for the residents: open one and you are in the app.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
import structlog

from service import auth, setup
from service.auth import Principal
from service.db import create_pool
from service.keys import store as keys_store
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting
from service.rules.book import RuleBook
from service.sessions import service as sessions
from service.supermarket import service as market
from service.timebank import hours

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


ITEMS = (
    ("rice", "大米 5kg", 10, 20),
    ("oil", "食用油 1.8L", 15, 10),
    ("soap", "洗衣皂", 5, 30),
    ("towel", "毛巾", 8, 12),
)
STORE = "s1"
# Volunteer hours waiting for the demo's organiser (team elderly-care).
HOURS = (
    ("demo-hours-1", "m-2", "陪伴独居老人", "2026-11-28T14:00:00+08:00", 120),
    ("demo-hours-2", "m-1", "楼道清扫", "2026-11-29T09:00:00+08:00", 45),
)
STAFF: tuple[tuple[str, Principal], ...] = (
    ("operator", Principal(key_id="", role="operator", community=COMMUNITY)),
    ("till", Principal(key_id="", role="store", community=COMMUNITY, store=STORE)),
    (
        "organiser",
        Principal(key_id="", role="organiser", community=COMMUNITY, teams=("elderly-care",)),
    ),
)
ISSUER = "demo"
LINK_TTL_S = 24 * 3600


class DemoLink(msgspec.Struct, frozen=True, kw_only=True):
    who: str
    url: str


async def seed_demo(dsn: str, base_url: str) -> list[DemoLink]:
    """Seeds the demo and returns the sign-in links to print (each works once)."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await _seed(conn)
            links = await _links(conn, base_url.rstrip("/"))
    finally:
        await pool.close()
    log.info("demo_ready", community=COMMUNITY, members=[m for m, _, _ in MEMBERS])
    return links


async def _links(conn: asyncpg.pool.PoolConnectionProxy, base_url: str) -> list[DemoLink]:
    await keys_store.revoke_issued_by(conn, ISSUER)
    links: list[DemoLink] = []
    for who, scope in STAFF:
        principal = msgspec.structs.replace(scope, key_id=auth.new_key_id())
        _, secret_hash = auth.new_key(principal)
        await auth.issue(conn, principal, secret_hash, ISSUER)
        link = await sessions.issue_staff_link(conn, COMMUNITY, principal.key_id, LINK_TTL_S)
        links.append(DemoLink(who=who, url=f"{base_url}/app/in#{link.token}"))
    office = Principal(key_id=ISSUER, role="admin")
    for member, _, name in MEMBERS:
        link = await sessions.issue_link(conn, COMMUNITY, member, office, LINK_TTL_S)
        links.append(DemoLink(who=f"{member} {name}", url=f"{base_url}/app/in#{link.token}"))
    return links


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
    page = await market.list_items(conn, COMMUNITY, STORE, None, 100)
    have = {item.sku for item in page.items}
    for sku, item_name, points, stock in ITEMS:
        if sku not in have:  # a restart keeps what the till sold
            await market.put_item(conn, COMMUNITY, STORE, sku, item_name, points, stock)
    for hours_id, member, activity, started, minutes in HOURS:
        logged = hours.LogHours(
            id=hours_id,
            member=member,
            activity=activity,
            started_at=datetime.fromisoformat(started),
            minutes=minutes,
            team="elderly-care",
        )
        await hours.log_hours(conn, book, COMMUNITY, logged, b"demo", "demo-volunteer-app")
