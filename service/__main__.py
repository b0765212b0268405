"""The `points-ledger` command: serve | migrate | verify | seal."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import msgspec
import uvicorn

from service import signals
from service.config import (
    DEMO_LOOPBACK_ENV,
    MIN_ADMIN_KEY_CHARS,
    ConfigError,
    Settings,
    load_settings,
)
from service.db import create_pool, migrate
from service.logs import configure_logging

if TYPE_CHECKING:
    from service.demo import DemoLink

# How long a SIGTERM waits for requests in flight before closing their connections.
GRACEFUL_SHUTDOWN_S: Final = 10


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL if set, else an embedded PostgreSQL in LEDGER_DATA_DIR that
    this command stops again on its way out, unless another live process still
    uses it."""
    if settings.database_url:
        yield settings.database_url
        return
    from service import embedded

    with embedded.serving(settings.data_dir) as dsn:
        yield dsn


async def _verify_all(dsn: str) -> int:
    from service import setup
    from service.ledger.audit import verify
    from service.ledger.service import seal_all
    from service.rules.book import RuleBook

    pool = await create_pool(dsn, min_size=1, max_size=2)
    failed = 0
    try:
        await seal_all(pool)
        async with pool.acquire() as conn:
            for community in await setup.community_ids(conn):
                report = await verify(conn, community, await RuleBook().params(conn, community))
                line = {"community": community, **msgspec.structs.asdict(report)}
                print(msgspec.json.encode(line).decode())
                failed += 0 if report.ok else 1
    finally:
        await pool.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve" and args.demo:
        _allow_demo_key(args.host)
    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"points-ledger: {err}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    signals.raise_stopped()
    try:
        with database(settings) as dsn:
            return _run(args, settings, dsn)
    except signals.Stopped as stopped:
        return signals.end_by(stopped.signum)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="points-ledger", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve the HTTP API")
    serve.add_argument("--host", default=os.environ.get("LEDGER_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("LEDGER_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("LEDGER_WORKERS", "1")))
    serve.add_argument("--demo", action="store_true", help="create the demo community first")
    sub.add_parser("migrate", help="apply pending migrations and exit")
    sub.add_parser("verify", help="audit every community; exit 1 on any problem")
    return parser


def _run(args: argparse.Namespace, settings: Settings, dsn: str) -> int:
    asyncio.run(migrate(dsn))
    if args.command == "migrate":
        return 0
    if args.command == "verify":
        return asyncio.run(_verify_all(dsn))
    if args.demo:
        from service.demo import seed_demo

        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        links = asyncio.run(seed_demo(dsn, f"http://{shown}:{args.port}"))
        _print_links(links)
    os.environ["DATABASE_URL"] = dsn  # the workers connect to the same server
    metrics_dir = _shared_metrics(args.workers)
    try:
        # With one worker, uvicorn re-raises SIGTERM/SIGINT here after its
        # graceful shutdown (see signals.Stopped); with several, its supervisor stops
        # the workers and returns, and the command exits 0 as uvicorn's does.
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            http="service.http_limits:LimitedHttpToolsProtocol",
            timeout_keep_alive=settings.http.keep_alive_s,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _print_links(links: list[DemoLink]) -> None:
    """The demo's one-time sign-in links, on the terminal only (never in a log)."""
    print("\nThe demo is ready. Open the app with one of these one-time links (24 h):", flush=True)
    for link in links:
        print(f"  {link.who:<14} {link.url}", flush=True)
    print("A link works once; `serve --demo` again prints new ones.\n", flush=True)


def _allow_demo_key(host: str) -> None:
    """`serve --demo` on a loopback address keeps the README's short demo key
    working, and says so; anywhere else the admin key must be a strong one."""
    key = os.environ.get("LEDGER_ADMIN_KEY", "")
    if not key or len(key) >= MIN_ADMIN_KEY_CHARS:
        return
    if host not in ("127.0.0.1", "localhost", "::1"):
        return  # load_settings refuses it, naming the variable
    os.environ[DEMO_LOOPBACK_ENV] = "1"
    print(
        f"points-ledger: accepting a LEDGER_ADMIN_KEY shorter than {MIN_ADMIN_KEY_CHARS} "
        f"characters for the demo on {host} only; any other address refuses it",
        file=sys.stderr,
    )


def _shared_metrics(workers: int) -> str | None:
    """With several workers, a fresh directory where prometheus_client keeps every
    worker's metrics (its multiprocess mode), so that a scrape answered by any
    worker reports the sum of all; the workers inherit it through the
    environment. None with one worker, or when PROMETHEUS_MULTIPROC_DIR is set
    already (then whoever set it empties it between runs)."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="points-ledger-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


if __name__ == "__main__":
    sys.exit(main())
