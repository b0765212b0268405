"""What the webhook outbox (SPEC section 12) costs when someone listens.

A webhook scenario runs a write scenario while one endpoint of the bench
community is subscribed to the events it produces (`Spec.webhook`). The endpoint
is created right before the scenario and deleted right after it, so the other
scenarios of a run write no events. It points at `Receiver`: a tiny HTTP/1.1
server in its own process (its CPU is the `receiver` group), which answers 204 to
every request at once and counts them.

After the scenario the harness waits (up to a bound) until the endpoint has no
pending delivery, measuring the CPU the backlog's deliveries take, and stores in
the scenario's `db["webhook"]`: the deliveries made, delivered and still pending
when the load generator returned, how long the backlog took to drain, what was
left, and what the receiver saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final

import asyncpg

from bench.cpu import CpuMeter, Groups, postgres_cores
from bench.driver import stop_child
from bench.seed import COMMUNITY, Api

_COUNTS: Final = """
SELECT count(*) AS made,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed
  FROM webhook_deliveries
 WHERE community_id = $1 AND webhook_id = $2
"""
_NO_CONTENT: Final = b"HTTP/1.1 204 No Content\r\n\r\n"
_LENGTH: Final = b"content-length:"


# -- the receiver's process ----------------------------------------------------------


class _Hook(asyncio.Protocol):
    """Reads requests framed by Content-Length (what the
    delivery worker sends), answers each 204 and counts it."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(buf[:end]).lower()
            length = 0
            at = head.find(_LENGTH)
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + len(_LENGTH) : stop if stop >= 0 else None])
            if len(buf) < end + 4 + length:
                return
            del buf[: end + 4 + length]
            self.counter.value += 1
            self.transport.write(_NO_CONTENT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _listen(pipe: Pipe, counter: Any) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Hook(counter), "127.0.0.1", 0)
    pipe.send(server.sockets[0].getsockname()[1])
    await loop.run_in_executor(None, pipe.recv)  # anything, or a closed pipe: stop
    server.close()


def serve(pipe: Pipe, counter: Any) -> None:
    import uvloop  # a dependency of uvicorn[standard], as in the load generator

    with contextlib.suppress(EOFError, OSError):
        uvloop.run(_listen(pipe, counter))


class Receiver:
    """The receiver's process; `port` to point endpoints at, `received` so far."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._counter: Any = ctx.Value("q", 0, lock=False)  # written by the child only
        self.process = ctx.Process(target=serve, args=(child, self._counter), name="bench-receiver")
        self.process.start()
        child.close()
        try:
            if not self._pipe.poll(timeout_s):
                raise EOFError
            self.port: int = self._pipe.recv()
        except EOFError:
            self.close()
            raise SystemExit("the webhook receiver did not start") from None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def received(self) -> int:
        return int(self._counter.value)

    def close(self) -> None:
        stop_child(self.process, self._pipe)


# -- the harness's side -------------------------------------------------------------


@dataclass
class Listening:
    """One scenario's endpoint, from its creation to its deletion."""

    webhook_id: str
    events: list[str]
    received_before: int
    at_end: dict[str, int] | None = None


def webhook_id(run_id: str, scenario: str) -> str:
    return f"bench-{run_id}-{scenario}"[:64]


async def create(
    port: int, admin_key: str, wid: str, events: list[str], receiver: Receiver
) -> Listening:
    """The endpoint, created with the admin key (an operator's: every event)."""
    body = {
        "id": wid,
        "url": f"http://127.0.0.1:{receiver.port}/hooks/{wid}",
        "events": events,
        "description": "bench: the outbox's cost (docs/performance.md)",
    }
    await Api(port, admin_key, concurrency=1).call("POST", _path(), body, 201)
    return Listening(webhook_id=wid, events=events, received_before=receiver.received)


async def delete(port: int, admin_key: str, wid: str) -> None:
    await Api(port, admin_key, concurrency=1).call("DELETE", f"{_path()}/{wid}", None, 204)


async def counts(dsn: str, wid: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(_COUNTS, COMMUNITY, wid)
    finally:
        await conn.close()
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


async def _drain(dsn: str, wid: str, timeout_s: float) -> tuple[float, dict[str, int]]:
    """Waits until the endpoint has no pending delivery, or `timeout_s`; returns
    the seconds waited and the counts then."""
    start = time.perf_counter()
    while True:
        now = await counts(dsn, wid)
        waited = time.perf_counter() - start
        if not now["pending"] or waited >= timeout_s:
            return round(waited, 2), now
        await asyncio.sleep(0.25)


def drain(
    dsn: str, listening: Listening, receiver: Receiver, groups: Groups, timeout_s: float
) -> dict[str, Any]:
    """Waits for the backlog (CPU measured meanwhile); what the scenario's
    `db["webhook"]` reports."""
    assert listening.at_end is not None
    meter = CpuMeter(groups)
    start = time.perf_counter()
    before = asyncio.run(counts(dsn, listening.webhook_id))  # the sealer has caught up
    waited, after = asyncio.run(_drain(dsn, listening.webhook_id, timeout_s))
    cores = meter.stop()
    elapsed = time.perf_counter() - start
    drained = after["delivered"] - before["delivered"]
    cpu_s = {
        "pg": round(postgres_cores(cores) * elapsed, 2),
        "service": round(cores.get("service", 0.0) * elapsed, 2),
        "receiver": round(cores.get("receiver", 0.0) * elapsed, 2),
    }
    return {
        "webhook_id": listening.webhook_id,
        "events": listening.events,
        "at_end": listening.at_end,  # when the load generator returned
        "drain_s": waited,
        "drained": drained,  # delivered while the CPU below was measured
        "drain_cpu_s": cpu_s,  # the backlog's deliveries, after the scenario
        "drain_ms_per_delivery": {
            k: (round(1000 * v / drained, 3) if drained else None) for k, v in cpu_s.items()
        },
        "after_drain": after,
        "left_pending": after["pending"],  # marked failed by the deletion
        "received": receiver.received - listening.received_before,
        "drain_timeout_s": timeout_s,
    }


def _path() -> str:
    return f"/v1/communities/{COMMUNITY}/webhooks"
