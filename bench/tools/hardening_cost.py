"""What issue 12's hardening costs a request, in the service's own CPU, measured one
piece at a time in this process:

    uv run python -m bench.tools.hardening_cost            # about a minute
    uv run python -m bench.tools.hardening_cost --rounds 3 # quicker, noisier

End to end (`bench/tools/ab_hardening.sh`), two runs of the same tree on this
machine differ by up to 15 %, more than the 5 % the hardening may cost, so the
pieces are measured where nothing else varies: the same requests fed to uvicorn's
httptools protocol and to `LimitedHttpToolsProtocol` (a balance read and a
transfer, headers as the benchmark's client sends them); the same query through
the pool as it was before (`a25c5ae`) and as it is (`BoundedPool`, the dropping
connection class, `statement_timeout` and `command_timeout`); the rate-limit
checks of `authorize`; the JSON body check. Each pair runs alternately in rounds
and the medians are compared, in CPU time of this process (`time.process_time`),
so the database's share of a query is not counted and the machine's drift falls
on both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.config import RateLimits, load_rate_limits
from service.http_limits import LimitedHttpToolsProtocol
from service.inbound import check_json
from service.ratelimit import Limits

_HEADERS = (
    b"host: 127.0.0.1:8000\r\nuser-agent: bench\r\naccept: */*\r\n"
    b"authorization: Bearer lk_0123456789abcdef.0123456789abcdef0123456789abcdef0123456789ab\r\n"
)
BALANCE = b"GET /v1/communities/bench/members/m-17/balance HTTP/1.1\r\n" + _HEADERS + b"\r\n"
_BODY = (
    b'{"id":"t-123456","postings":[{"source":"member:m-17:points",'
    b'"destination":"member:m-18:points","asset":"points","amount":5}],"memo":"bench"}'
)
TRANSFER = (
    b"POST /v1/communities/bench/transactions HTTP/1.1\r\n"
    + _HEADERS
    + b"content-type: application/json\r\ncontent-length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


class _Transport(asyncio.Transport):
    """Takes what the protocol writes and drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}
        return extra.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _app(done: list[asyncio.Future[None]]) -> Any:
    """An application that answers at once, as cheaply as ASGI allows."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            await receive()
        start = {"type": "http.response.start", "status": 200}
        await send(start | {"headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})
        done[0].set_result(None)

    return app


async def _protocol_seconds(cls: type[HttpToolsProtocol], request: bytes, n: int) -> float:
    """CPU seconds for `n` keep-alive requests on one connection."""
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[None]] = [loop.create_future()]
    config = Config(app=_app(done), lifespan="off", access_log=False, log_level="warning")
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_Transport())
    started = time.process_time()
    for _ in range(n):
        protocol.data_received(request)
        await done[0]
        done[0] = loop.create_future()
    seconds = time.process_time() - started
    protocol.connection_lost(None)
    return seconds


def _compare(
    label: str,
    before: Callable[[], Awaitable[float]],
    after: Callable[[], Awaitable[float]],
    n: int,
    rounds: int,
) -> tuple[str, float, float]:
    """Median µs per operation of each side, the two run alternately."""
    sides: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for times, run in zip(sides, (before, after), strict=True):
            times.append(1e6 * asyncio.get_event_loop().run_until_complete(run()) / n)
    b, a = statistics.median(sides[0]), statistics.median(sides[1])
    print(f"{label:<34} {b:8.2f} {a:8.2f} {a - b:+8.2f} µs")
    return label, b, a


async def _seconds(n: int, op: Callable[[], None]) -> float:
    started = time.process_time()
    for _ in range(n):
        op()
    return time.process_time() - started


async def _pool_seconds(pool: asyncpg.Pool, n: int) -> float:
    started = time.process_time()
    for i in range(n):
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT $1::bigint + 1", i)
    return time.process_time() - started


def _pools(dsn: str, n: int, rounds: int) -> tuple[str, float, float]:
    from service.db import _init_connection, _keep_session, create_pool

    loop = asyncio.get_event_loop()
    # The pool as it was before issue 12 (`a25c5ae`, service/db.py).
    plain = loop.run_until_complete(
        asyncpg.create_pool(
            dsn,
            reset=_keep_session,
            min_size=1,
            max_size=1,
            command_timeout=30,
            max_inactive_connection_lifetime=300,
            statement_cache_size=256,
            server_settings={"application_name": "points-ledger", "jit": "off"},
            init=_init_connection,
        )
    )
    bounded = loop.run_until_complete(create_pool(dsn, min_size=1, max_size=1, timeout_s=10.0))
    try:
        return _compare(
            "pool acquire + one query",
            lambda: _pool_seconds(plain, n),
            lambda: _pool_seconds(bounded, n),
            n,
            rounds,
        )
    finally:
        loop.run_until_complete(plain.close())
        loop.run_until_complete(bounded.close())


def _limits(enabled: bool) -> Limits:
    config = load_rate_limits()
    return Limits(RateLimits(**{**_fields(config), "enabled": enabled}))


def _fields(config: RateLimits) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__struct_fields__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--dsn", help="PostgreSQL to query (default: an embedded one)")
    args = parser.parse_args()
    asyncio.set_event_loop(uvloop.new_event_loop())
    n, rounds = args.requests, args.rounds
    print(f"{'':<34} {'before':>8} {'after':>8} {'added':>8}")
    rows = [
        _compare(
            f"HTTP protocol, {label}",
            lambda r=request: _protocol_seconds(HttpToolsProtocol, r, n),  # type: ignore[misc]
            lambda r=request: _protocol_seconds(LimitedHttpToolsProtocol, r, n),  # type: ignore[misc]
            n,
            rounds,
        )
        for label, request in (("balance read", BALANCE), ("transfer", TRANSFER))
    ]
    limits, header = _limits(True), "Bearer lk_0123456789abcdef.secret"
    rows.append(
        _compare(
            "rate limits in authorize",
            lambda: _seconds(n, lambda: None),
            lambda: _seconds(n, lambda: limits.admit("127.0.0.1", header)),
            n,
            rounds,
        )
    )
    rows.append(
        _compare(
            "JSON body check (transfer)",
            lambda: _seconds(n, lambda: None),
            lambda: _seconds(n, lambda: check_json(_BODY)),
            n,
            rounds,
        )
    )
    if args.dsn:
        rows.append(_pools(args.dsn, n // 4, rounds))
    else:
        from service import embedded

        with tempfile.TemporaryDirectory() as tmp:
            dsn = embedded.start(Path(tmp) / "pg")
            try:
                rows.append(_pools(dsn, n // 4, rounds))
            finally:
                embedded.stop(Path(tmp) / "pg")
    read = sum(a - b for label, b, a in rows if "transfer" not in label)
    transfer = sum(a - b for label, b, a in rows if "balance" not in label)
    print(f"added per balance read: {read:.2f} µs; per transfer: {transfer:.2f} µs")


if __name__ == "__main__":
    main()
