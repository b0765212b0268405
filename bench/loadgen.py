"""The load generator: a separate process that runs one scenario at a time.

The harness sends a `Spec` down a pipe; this process opens `clients` keep-alive
connections (two each when residents' phones take part), runs the scenario's
step in a closed loop on each until the time is up, sends a progress tick every
second and, at the end, a `ScenarioResult`.
Requests that complete during the warm-up are sent but not measured.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from multiprocessing.connection import Connection as Pipe
from typing import Any

from bench.httpclient import Connection
from bench.scenarios import STEPS, Ctx, Spec
from bench.stats import ScenarioResult, latency


class Tally:
    def __init__(self, measure_from: float) -> None:
        self.measure_from = measure_from
        self.measure_to = float("inf")
        self.samples: dict[str, list[float]] = {}
        self.counts = {"ok": 0, "expected": 0, "error": 0}
        self.ops = 0
        self.all_ops = 0
        self.error_samples: list[str] = []
        self.total_requests = 0

    def measuring(self, now: float) -> bool:
        return self.measure_from <= now <= self.measure_to

    def record(self, kind: str, elapsed: float, outcome: str, status: int, body: bytes) -> None:
        self.total_requests += 1
        if outcome == "error":
            self.fail(f"{kind}: HTTP {status} {body[:240]!r}")
        elif self.measuring(time.perf_counter()):
            self.counts[outcome] += 1
            self.samples.setdefault(kind, []).append(elapsed)

    def fail(self, sample: str) -> None:
        """Errors count whenever they happen, warm-up included."""
        self.counts["error"] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(sample)


async def _client(spec: Spec, index: int, tally: Tally, end: float) -> None:
    headers = {"Authorization": f"Bearer {spec.key or spec.admin_key}"}
    conn = Connection("127.0.0.1", spec.port, headers)
    # The residents' phones: one more connection, each request with its own key.
    phone = Connection("127.0.0.1", spec.port, {}) if spec.residents else None
    ctx = Ctx(
        spec=spec,
        conn=conn,
        phone=phone,
        client=index,
        rng=random.Random(f"{spec.run_id}-{spec.name}-{index}"),
        record=tally.record,
        fail=tally.fail,
        clock=time.perf_counter,
    )
    step = STEPS[spec.step]
    try:
        while time.perf_counter() < end:
            try:
                done = await step(ctx)
            except Exception as err:  # a broken connection or an unreadable answer
                tally.fail(f"{type(err).__name__}: {err}")
                await asyncio.sleep(0.05)
                continue
            tally.all_ops += done
            if tally.measuring(time.perf_counter()):
                tally.ops += done
    finally:
        conn.close()
        if phone is not None:
            phone.close()


async def _ticker(pipe: Pipe, tally: Tally, start: float, end: float) -> None:
    while True:
        await asyncio.sleep(1.0)
        now = time.perf_counter()
        pipe.send(
            (
                "tick",
                round(now - start, 1),
                round(end - start, 1),
                tally.total_requests,
                tally.counts["error"],
            )
        )


async def run(spec: Spec, pipe: Pipe) -> ScenarioResult:
    start = time.perf_counter()
    tally = Tally(start + spec.warmup_s)
    end = start + spec.warmup_s + spec.seconds
    tally.measure_to = end
    ticker = asyncio.create_task(_ticker(pipe, tally, start, end))
    clients = [asyncio.create_task(_client(spec, i, tally, end)) for i in range(spec.clients)]
    _, stuck = await asyncio.wait(clients, timeout=end + spec.grace_s - time.perf_counter())
    for task in stuck:  # still waiting long after the end: slow, not wrong; counted apart
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    ticker.cancel()
    seconds = end - tally.measure_from
    measured = tally.counts["ok"] + tally.counts["expected"]
    all_samples = [s for samples in tally.samples.values() for s in samples]
    return ScenarioResult(
        name=spec.name,
        title=spec.title,
        clients=spec.clients,
        seconds=round(seconds, 2),
        requests=measured,
        ok=tally.counts["ok"],
        expected=tally.counts["expected"],
        errors=tally.counts["error"],
        unfinished=len(stuck),
        error_samples=tally.error_samples,
        ops=tally.ops,
        ops_per_s=round(tally.ops / seconds, 1),
        all_ops=tally.all_ops,
        requests_per_s=round(measured / seconds, 1),
        latency=latency(all_samples),
        by_kind={kind: latency(samples) for kind, samples in sorted(tally.samples.items())},
    )


def serve(pipe: Pipe) -> None:
    """The process's main loop: one Spec in, ticks and one result out, until None."""
    import uvloop  # a dependency of uvicorn[standard]

    while True:
        message: Any = pipe.recv()
        if message is None:
            return
        try:
            result = uvloop.run(run(message, pipe))
        except Exception:
            pipe.send(("failed", traceback.format_exc()))
            continue
        pipe.send(("result", result))
