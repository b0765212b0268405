"""`serve --workers 2` reports one set of metrics: whichever worker answers a
scrape, every request of every worker is in it (prometheus_client's multiprocess
mode, in a directory `serve` creates and removes)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time

import httpx
import psutil  # type: ignore[import-untyped]

_HEALTH = re.compile(
    r'^ledger_requests_total\{[^}]*method="GET"[^}]*path="/health"[^}]*status_code="200"[^}]*\}'
    r" (\S+)$",
    re.MULTILINE,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_ready(client: httpx.AsyncClient, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.returncode is None, "serve exited"
        try:
            if (await client.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("serve --workers 2 did not become ready")


async def test_two_workers_report_the_sum_of_both(dsn: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DATABASE_URL=dsn, LEDGER_SCHEDULER="off", LEDGER_LOG_LEVEL="warning")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    # Scrapes on a new connection each, so that either worker may answer them.
    async with httpx.AsyncClient(base_url=base, headers={"Connection": "close"}) as scraper:
        try:
            await _wait_ready(scraper, proc)
            before = await _health_count(scraper)
            served = await _requests_on_both_workers(base, proc.pid, port)
            seen = {await _health_count(scraper) for _ in range(8)}
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
    # Per-worker counters would show one worker's share, below the total.
    assert seen == {before + served}, (before, served, seen)


async def _requests_on_both_workers(base: str, serve_pid: int, port: int) -> int:
    """Opens keep-alive connections until both workers hold some, then sends a
    request on each; returns how many requests were answered."""
    clients: list[httpx.AsyncClient] = []
    try:
        for _ in range(20):
            batch = [httpx.AsyncClient(base_url=base) for _ in range(16)]
            clients += batch
            await asyncio.gather(*(c.get("/health") for c in batch))
            if len(_workers_with_connections(serve_pid, port)) == 2:
                break
        assert len(_workers_with_connections(serve_pid, port)) == 2
        replies = await asyncio.gather(*(c.get("/health") for c in clients))
        assert all(r.status_code == 200 for r in replies)
        return 2 * len(clients)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def _workers_with_connections(serve_pid: int, port: int) -> set[int]:
    """The worker processes holding an established connection on `port`."""
    holding = set()
    for worker in psutil.Process(serve_pid).children(recursive=True):
        for conn in worker.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED:
                holding.add(worker.pid)
    return holding


async def _health_count(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = _HEALTH.findall(text)
    assert len(found) <= 1, text  # one series, not one per worker
    return float(found[0]) if found else 0.0
