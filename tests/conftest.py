"""Fixtures: one PostgreSQL per test run, a fresh database per test, the real app.

The server is the embedded one unless DATABASE_URL points elsewhere. Migrations
run once into a template database; each test gets a copy of it (a file copy,
tens of milliseconds), so tests never see each other's rows. Every test that
touches a database ends with the ledger's own audit passing for every community.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service import embedded
from service.app import create_app
from service.config import load_settings
from service.db import create_pool, migrate, start_embedded
from service.ledger.audit import verify
from service.ledger.service import seal_all
from service.rules.book import RuleBook
from tests import citus_support
from tests.helpers import ADMIN_KEY, TEMPLATE, bearer, with_database

_RUN_PREFIX = "ledger-test-"
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DATABASE_URL, or an embedded server in a fresh temporary directory that is
    stopped before the directory is removed."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    _reap_killed_runs()
    with tempfile.TemporaryDirectory(prefix=_RUN_PREFIX) as tmp:
        data_dir = Path(tmp) / "pg"
        try:
            yield start_embedded(data_dir)
        finally:
            embedded.stop(data_dir)


def _reap_killed_runs() -> None:
    """Stops the servers of earlier runs killed before their teardown (SIGKILL,
    or SIGTERM, which pytest does not catch) and removes their directories. A
    run still alive is listed in its server's handle file, so it is left alone;
    so is a handle file less than a minute old, which may still be being written
    by a run starting now. Best effort: a directory that cannot be reaped is
    left for the next run, never a reason to fail this one."""
    for handle in Path(tempfile.gettempdir()).glob(f"{_RUN_PREFIX}*/pg/.handle_pids.json"):
        try:
            if time.time() - handle.stat().st_mtime < 60:
                continue
            if embedded.stop_orphan(handle.parent):
                shutil.rmtree(handle.parent.parent, ignore_errors=True)
        except (OSError, RuntimeError) as err:
            print(f"left {handle.parent} alone: {err!r}", file=sys.stderr)


@pytest.fixture(scope="session")
def citus(server_dsn: str) -> bool:
    """Whether the server is a Citus coordinator (tests/citus_support.py)."""
    return asyncio.run(citus_support.is_citus(server_dsn))


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str, citus: bool) -> Iterator[str]:
    """The migrated database each test copies; on Citus, the one database of the
    run, which every test uses in turn and which is emptied after each."""
    if citus:
        name = f"ledger_citus_{os.getpid()}"
        url = asyncio.run(citus_support.create_database(server_dsn, name))
        asyncio.run(migrate(url))
        yield url
        asyncio.run(citus_support.drop_database(server_dsn, name))
        return

    async def build() -> None:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        await migrate(with_database(server_dsn, TEMPLATE))

    asyncio.run(build())
    yield with_database(server_dsn, TEMPLATE)


@pytest.fixture(scope="session")
def databases(server_dsn: str, template_dsn: str, citus: bool) -> citus_support.Databases:
    """Databases of their own for tests that need one besides `dsn` (tests/citus_support.py)."""
    return citus_support.Databases(server_dsn, template_dsn, citus)


async def audit_all(dsn: str) -> None:
    """Seals what is queued, then asserts the audit finds nothing in any community."""
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await seal_all(pool)
        async with pool.acquire() as conn:
            for row in await conn.fetch("SELECT id FROM communities"):
                report = await verify(conn, row["id"], await RuleBook().params(conn, row["id"]))
                assert report.ok, f"audit of {row['id']}: {report.problems}"
    finally:
        await pool.close()


@pytest.fixture
async def dsn(server_dsn: str, template_dsn: str, citus: bool) -> AsyncIterator[str]:
    """A fresh migrated database for this test; audited when the test ends."""
    if citus:
        yield template_dsn
        try:
            await audit_all(template_dsn)
        finally:
            await citus_support.wipe(template_dsn)
        return
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
    finally:
        await admin.close()
    url = with_database(server_dsn, name)
    yield url
    await audit_all(url)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(dsn, min_size=1, max_size=10)
    yield p
    await p.close()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """The real app on the test database, with an admin key; the scheduler is off
    so tests drive expiry and sealing explicitly."""
    os.environ["LEDGER_ADMIN_KEY"] = ADMIN_KEY
    os.environ["LEDGER_POOL_MAX"] = "30"
    app = create_app(load_settings(), dsn=dsn, scheduler=False)
    async with AsyncTestClient(app) as c:
        c.headers.update(bearer(ADMIN_KEY))
        yield c
