"""CPU per process group while a scenario runs, sampled with psutil.

Groups: the PostgreSQL backends serving queries, PostgreSQL's own background
processes (WAL writer, checkpointer, …), the service's processes, the load
generator, pgbench, and this harness. Each is reported in cores (1.0 = one
core busy for the whole interval); `machine_busy` is what the whole machine used.
A background thread samples every half second, so a process that exits loses at
most its last half second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil  # type: ignore[import-untyped]

Groups = Callable[[], dict[str, list[int]]]
_INTERVAL_S = 0.5


def _cpu(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(t.user + t.system)


def postgres_groups(postmaster_pid: int) -> dict[str, list[int]]:
    """Backends (`postgres: user db [local] …`) apart from background processes."""
    try:
        children = psutil.Process(postmaster_pid).children()
    except psutil.NoSuchProcess:
        return {}
    backends: list[int] = []
    background = [postmaster_pid]
    for child in children:
        try:
            title = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        is_backend = "[local]" in title or "127.0.0.1" in title
        (backends if is_backend else background).append(child.pid)
    return {"pg_backends": backends, "pg_background": background}


def postgres_cores(cpu: dict[str, float]) -> float:
    """PostgreSQL's cores: the backends, the background processes and, on a Citus
    cluster, the coordinator's backends (`pg_coordinator`, bench/pg.py Cluster)."""
    return sum(cpu.get(k, 0.0) for k in ("pg_backends", "pg_coordinator", "pg_background"))


class CpuMeter:
    """Samples the groups' CPU time until `stop()`, which returns cores per group.

    A process present at the first sample counts what it used after it; one that
    appears later was born after it and counts everything it used.
    """

    def __init__(self, groups: Groups) -> None:
        self._groups = groups
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._t0 = time.monotonic()
        self._elapsed = 0.0
        self._sys0 = psutil.cpu_times()
        self._sample(initial=True)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-meter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(_INTERVAL_S):
            self._sample(initial=False)

    def _sample(self, *, initial: bool) -> None:
        for group, pids in self._groups().items():
            for pid in pids:
                used = _cpu(pid)
                if used is None:
                    continue
                if pid not in self._first:
                    self._first[pid] = used if initial else 0.0
                self._last[pid] = (group, used)

    def per_process(self, group: str) -> list[float]:
        """Cores each process of `group` used, busiest first (after `stop()`)."""
        elapsed = max(self._elapsed, 1e-9)
        used = [u - self._first[pid] for pid, (g, u) in self._last.items() if g == group]
        return sorted((round(u / elapsed, 2) for u in used), reverse=True)

    def stop(self) -> dict[str, float]:
        self._stopped.set()
        self._thread.join()
        self._sample(initial=False)
        self._elapsed = elapsed = max(time.monotonic() - self._t0, 1e-9)
        cores: dict[str, float] = {}
        for pid, (group, used) in self._last.items():
            cores[group] = cores.get(group, 0.0) + (used - self._first[pid]) / elapsed
        sys1 = psutil.cpu_times()
        total = sum(sys1) - sum(self._sys0)
        idle = (sys1.idle + sys1.iowait) - (self._sys0.idle + self._sys0.iowait)
        busy = psutil.cpu_count() * (1 - idle / total) if total > 0 else 0.0
        cores["unattributed"] = max(0.0, busy - sum(cores.values()))  # kernel, other programs
        cores["machine_busy"] = busy
        return {k: round(v, 2) for k, v in sorted(cores.items())}


def wait_idle(groups: Groups, max_wait_s: float, threshold: float = 0.2) -> float:
    """Waits (up to `max_wait_s`) until programs outside `groups` use less than
    `threshold` cores over two seconds; returns the seconds waited. On a shared
    machine this keeps someone else's test run out of the measurements."""
    start = time.monotonic()
    while True:
        meter = CpuMeter(groups)
        time.sleep(2.0)
        other = meter.stop().get("unattributed", 0.0)
        waited = time.monotonic() - start
        if other < threshold or waited >= max_wait_s:
            return round(waited, 1)
        time.sleep(3.0)
