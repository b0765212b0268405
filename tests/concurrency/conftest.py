"""A client whose requests really run at the same time.

The shared `client` fixture (Litestar's AsyncTestClient) runs each request to the
end in a portal thread while blocking the caller's event loop, so requests
gathered through it run one after another, and a request that waits on a lock
held by a connection of the test's own loop cannot ever be released. Here the
app is served by httpx's ASGI transport inside the test's event loop: gathered
requests interleave at every database round trip, as behind a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from litestar import Litestar

from service.app import create_app
from service.config import load_settings
from tests.helpers import ADMIN_KEY, bearer


async def _serve(app: Litestar, up: asyncio.Event, stop: asyncio.Event) -> None:
    """Holds the app's lifespan (pool open) in one task, as a server would."""
    async with app.lifespan():
        up.set()
        await stop.wait()


@pytest.fixture
async def api(dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on the test database (admin key, pool of 30, scheduler off)."""
    settings = msgspec.structs.replace(load_settings(), admin_key=ADMIN_KEY, pool_max_size=30)
    app = create_app(settings, dsn=dsn, scheduler=False)
    up, stop = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(_serve(app, up, stop))
    waiter = asyncio.create_task(up.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if server.done():
        server.result()  # the lifespan failed to start: raise its error here
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ledger", headers=bearer(ADMIN_KEY)
        ) as c:
            yield c
    finally:
        stop.set()
        await server
