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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import psutil  # type: ignore[import-untyped]

from tests.helpers import free_port

_KEY = "metrics-test-admin-0123456789abcdef"
_IN_PROGRESS = re.compile(
    r'^ledger_requests_in_progress\{[^}]*method="POST"[^}]*path="/v1/communities"[^}]*\}'
    r" (\S+)$",
    re.MULTILINE,
)
_HEALTH = re.compile(
    r'^ledger_requests_total\{[^}]*method="GET"[^}]*path="/health"[^}]*status_code="200"[^}]*\}'
    r" (\S+)$",
    re.MULTILINE,
)


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


@asynccontextmanager
async def _serve_two_workers(dsn: str) -> AsyncIterator[tuple[int, int, httpx.AsyncClient]]:
    """`serve --workers 2` on a free port: (its pid, the port, a client that opens a
    new connection per request, so that either worker may answer)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=dsn, LEDGER_SCHEDULER="off", LEDGER_LOG_LEVEL="warning", LEDGER_ADMIN_KEY=_KEY
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "serve", "--workers", "2", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, headers={"Connection": "close"}) as client:
        try:
            await _wait_ready(client, proc)
            yield proc.pid, port, client
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


async def test_two_workers_report_the_sum_of_both(dsn: str) -> None:
    async with _serve_two_workers(dsn) as (pid, port, scraper):
        before = await _health_count(scraper)
        served = await _requests_on_both_workers(f"http://127.0.0.1:{port}", pid, port)
        seen = {await _health_count(scraper) for _ in range(8)}
    # Per-worker counters would show one worker's share, below the total.
    assert seen == {before + served}, (before, served, seen)


async def test_a_killed_workers_requests_leave_the_in_progress_sum(dsn: str) -> None:
    """A worker killed mid-request (no shutdown) is replaced by uvicorn; its
    in-progress request must not stay counted once the new worker has started."""
    async with _serve_two_workers(dsn) as (pid, port, scraper):
        # A request that stays in progress: its body is promised but never sent.
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(
            b"POST /v1/communities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + _KEY.encode() + b"\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        try:
            assert await _eventually(scraper, lambda n: n == 1.0), "the request is in progress"
            worker = _worker_serving(pid, port, held.getsockname()[1])
            worker.kill()
        finally:
            held.close()
        assert await _eventually(scraper, lambda n: n == 0.0), "the dead worker still counts"


async def _eventually(client: httpx.AsyncClient, wanted: Callable[[float], bool]) -> bool:
    """Whether the in-progress count of POST /v1/communities becomes `wanted` within
    20 s (the killed worker must be replaced and the new one started)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            found = _IN_PROGRESS.findall((await client.get("/metrics")).text)
        except httpx.TransportError:
            found = None  # a worker is being replaced
        if found is not None and wanted(sum(float(v) for v in found)):
            return True
        await asyncio.sleep(0.2)
    return False


def _worker_serving(serve_pid: int, port: int, client_port: int) -> psutil.Process:
    for worker in psutil.Process(serve_pid).children(recursive=True):
        for conn in worker.net_connections(kind="tcp"):
            if (
                conn.laddr
                and conn.laddr.port == port
                and conn.raddr
                and conn.raddr.port == client_port
            ):
                return worker
    raise AssertionError("no worker holds the connection")


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
