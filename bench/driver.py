"""The harness's side of the load generator: start its process, hand it a
scenario, print progress and sample CPU per process while it runs."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable
from typing import Any

from bench import loadgen
from bench.cpu import CpuMeter
from bench.scenarios import Spec
from bench.stats import ScenarioResult

GroupsFn = Callable[[], dict[str, list[int]]]


class LoadGenerator:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=loadgen.serve, args=(child,), name="bench-loadgen")
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def run(self, spec: Spec, groups: GroupsFn) -> ScenarioResult:
        """Runs `spec` to the end; the result carries the CPU each group used."""
        meter = CpuMeter(groups)
        self._pipe.send(spec)
        last = (0.0, 0)
        while True:
            if not self._pipe.poll(0.5):
                if not self.process.is_alive():
                    raise SystemExit("the load generator died")
                continue
            kind, *payload = self._pipe.recv()
            if kind == "failed":
                raise SystemExit(f"the load generator failed in {spec.name}:\n{payload[0]}")
            if kind == "result":
                result: ScenarioResult = payload[0]
                break
            last = _progress(spec, last, *payload)
        _clear_line()
        result.cpu_cores = meter.stop()
        result.db["service_cores_by_process"] = meter.per_process("service")
        return result

    def close(self) -> None:
        stop_child(self.process, self._pipe)


def stop_child(process: multiprocessing.process.BaseProcess, pipe: Any) -> None:
    """Asks a child process that serves on `pipe` to end (None), then kills it if it
    has not within 10 s."""
    if process.is_alive():
        with contextlib.suppress(OSError):
            pipe.send(None)
        process.join(10)
    if process.is_alive():
        process.kill()


def _tty() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def _progress(
    spec: Spec, last: tuple[float, int], elapsed: float, total: float, requests: int, errors: int
) -> tuple[float, int]:
    """Prints the requests per second since the last tick; returns this tick."""
    if _tty() or int(elapsed) % 5 == 0:
        span = elapsed - last[0]
        rate = (requests - last[1]) / span if span > 0 else 0.0
        line = (
            f"  {spec.name:<16} {elapsed:4.0f}/{total:.0f} s {requests:>9,} requests"
            f" {rate:>8,.0f}/s  errors {errors}"
        )
        sys.stderr.write("\r" + line if _tty() else line + "\n")
        sys.stderr.flush()
        return elapsed, requests
    return last


def _clear_line() -> None:
    if _tty():
        sys.stderr.write("\r" + " " * 90 + "\r")
        sys.stderr.flush()
