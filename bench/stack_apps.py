"""The HTTP stack's own cost: three servers that answer the balance read's URL
with none of the ledger's work, run under uvicorn exactly as the service is.

- `asgi`: a bare ASGI callable that sends a constant JSON body. What uvicorn,
  httptools and uvloop cost per request, and nothing else.
- `litestar`: one Litestar route that returns a constant msgspec struct: the
  framework's routing, handler call and response on top of that.
- `litestar_pg`: the same route plus the service's own database work for a
  balance read (one pooled asyncpg round trip of the same statement, prepared).

The harness runs the load generator's balance step against each; the service
CPU per request of these rows, against the real balance read's, shows how much
of a request the stack costs before any of our code runs (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, get
from litestar.params import FromPath

from service.config import load_settings
from service.db import create_pool, q

_BODY = msgspec.json.encode(
    {"points": {"balance": 5, "baseline": 0, "redeemable": 5, "held": 0}, "minutes": {}}
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))]
_PATH = "/v1/communities/{c:str}/members/{m:str}/balance"


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


class Points(msgspec.Struct):
    balance: int
    baseline: int
    redeemable: int
    held: int


class Balance(msgspec.Struct):
    points: Points
    minutes: dict[str, int]


_CONSTANT = Balance(points=Points(5, 0, 5, 0), minutes={})


@get(_PATH)
async def constant(c: FromPath[str], m: FromPath[str]) -> Balance:
    return _CONSTANT


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


litestar = Litestar([constant, health], openapi_config=None)

_pool: asyncpg.Pool | None = None


@asynccontextmanager
async def _lifespan(_: Litestar) -> AsyncIterator[None]:
    global _pool
    settings = load_settings()  # the service's pool sizes
    _pool = await create_pool(
        os.environ["BENCH_DSN"],
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
    )
    try:
        yield
    finally:
        await _pool.close()


@get(_PATH)
async def from_database(c: FromPath[str], m: FromPath[str]) -> Balance:
    assert _pool is not None
    addresses = [f"member:{m}:points", f"member:{m}:minutes"]
    async with _pool.acquire() as conn:
        rows = await conn.fetch(q("member_balances"), c, addresses)
    points = next(r for r in rows if r["asset"] == "points")
    return Balance(points=Points(points["posted"], 0, points["posted"], points["held"]), minutes={})


litestar_pg = Litestar([from_database, health], openapi_config=None, lifespan=[_lifespan])
