"""The embedded PostgreSQL lives exactly as long as the commands that use it.

Each test runs the real `points-ledger` command as a subprocess on its own
LEDGER_DATA_DIR (no DATABASE_URL), waits for `/ready`, and then stops or kills it
the way an operator or a supervisor would. A server is "of a data directory"
when its postmaster was started with `-D <that directory>`; the tests look for
it among all processes rather than trusting postmaster.pid alone, because a
leftover server is exactly what they are looking for.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from tests.faults import live

_KEY = "lifecycle-test-admin-key-0123456789abcd"  # 40 characters, as the service asks
_READY_S = 120  # a first start runs initdb; two cores are shared with other work
_EXIT_S = 60


class _Runs:
    """Every process a test starts, and every data directory it uses, so that the
    finally block can kill what is left whatever the test's outcome."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: set[Path] = set()
        self.ports: set[int] = set()

    def serve(self, data_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
        """`serve` on a free port that no other run of this test was given (the
        kernel may hand a just-closed port out again)."""
        port = next(p for p in (live.free_port() for _ in range(20)) if p not in self.ports)
        self.ports.add(port)
        return self.start(data_dir, "serve", "--port", str(port), *extra), port

    def start(self, data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
        self.dirs.add(data_dir)
        log = (self.tmp / f"run{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            env=_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so the cleanup can kill all of it
        )
        log.close()
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-8000:] for p in self.tmp.glob("run*.log"))

    def kill_everything(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_EXIT_S)
        for data_dir in self.dirs:
            for server in postmasters(data_dir):
                server.send_signal(signal.SIGQUIT)  # immediate shutdown
            psutil.wait_procs(postmasters(data_dir), timeout=_EXIT_S)
            for server in postmasters(data_dir):
                server.kill()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[_Runs]:
    r = _Runs(tmp_path)
    try:
        yield r
    finally:
        r.kill_everything()


def _env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "LEDGER_WORKERS")
    }
    env.update(
        LEDGER_DATA_DIR=str(data_dir),
        LEDGER_ADMIN_KEY=_KEY,
        LEDGER_SCHEDULER="off",
        LEDGER_LOG_LEVEL="warning",
    )
    return env


def postmasters(data_dir: Path) -> list[psutil.Process]:
    """The live postmasters started on `data_dir` (backends rename themselves, so
    only the postmaster still shows `-D <dir>` in its command line)."""
    wanted = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.info["name"] != "postgres":
            continue
        if any(a == "-D" and b == wanted for a, b in itertools.pairwise(cmd)):
            found.append(proc)
    return found


def wait_ready(proc: subprocess.Popen[bytes], port: int, runs: _Runs) -> None:
    live.wait_ready(f"http://127.0.0.1:{port}", proc.poll, runs.output, _READY_S)


def the_one_server(data_dir: Path) -> psutil.Process:
    servers = postmasters(data_dir)
    assert len(servers) == 1, f"servers on {data_dir}: {[s.pid for s in servers]}"
    return servers[0]


def ended(proc: psutil.Process) -> bool:
    """Exited, or a zombie: a stopped postmaster is a child of init, which may
    take a moment to reap it."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def assert_no_server(data_dir: Path, server: psutil.Process, runs: _Runs) -> None:
    """Checked at once after the command exited: stopping the server is part of
    exiting, not something that may happen a little later."""
    assert ended(server), f"postmaster {server.pid} still runs:\n{runs.output()}"
    assert not (data_dir / "postmaster.pid").exists(), "postmaster.pid is left behind"
    assert postmasters(data_dir) == []


def stop_with(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=_EXIT_S)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_stops_the_server_and_the_exit_status_is_the_signals(
    runs: _Runs, tmp_path: Path, sig: signal.Signals
) -> None:
    data_dir = tmp_path / "data"
    proc, port = runs.serve(data_dir)
    wait_ready(proc, port, runs)
    server = the_one_server(data_dir)
    assert stop_with(proc, sig) == -sig, runs.output()
    assert_no_server(data_dir, server, runs)


def test_sigterm_with_two_workers_stops_the_server(runs: _Runs, tmp_path: Path) -> None:
    """With workers, uvicorn's supervisor is the process that owns the server; it
    stops the workers, returns, and the command exits 0 as uvicorn's does."""
    data_dir = tmp_path / "data"
    proc, port = runs.serve(data_dir, "--workers", "2")
    wait_ready(proc, port, runs)
    server = the_one_server(data_dir)
    assert stop_with(proc, signal.SIGTERM) == 0, runs.output()
    assert_no_server(data_dir, server, runs)


@pytest.mark.parametrize("command", ["migrate", "verify"])
def test_a_command_that_ends_stops_the_server_it_started(
    runs: _Runs, tmp_path: Path, command: str
) -> None:
    data_dir = tmp_path / "data"
    assert runs.start(data_dir, command).wait(timeout=_READY_S) == 0, runs.output()
    assert postmasters(data_dir) == []
    assert not (data_dir / "postmaster.pid").exists()


def test_after_kill_9_the_next_start_replaces_the_orphan(runs: _Runs, tmp_path: Path) -> None:
    """The killed service's server is left with no live client; the next start
    stops it and starts its own, so exactly one server remains, and that one is
    stopped with the service that owns it."""
    data_dir = tmp_path / "data"
    first, port = runs.serve(data_dir)
    wait_ready(first, port, runs)
    orphan = the_one_server(data_dir)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=_EXIT_S)
    assert not ended(orphan), "the orphan is what this test is about"

    second, port = runs.serve(data_dir)
    wait_ready(second, port, runs)
    server = the_one_server(data_dir)
    assert ended(orphan), "the orphan was adopted, not replaced"
    assert stop_with(second, signal.SIGTERM) == -signal.SIGTERM, runs.output()
    assert_no_server(data_dir, server, runs)


def test_two_starts_at_once_share_one_server(runs: _Runs, tmp_path: Path) -> None:
    """Two commands started together on one directory: one starts the server and
    the other uses it; the server outlives the first to stop and goes with the last."""
    data_dir = tmp_path / "data"
    (a, port_a), (b, port_b) = runs.serve(data_dir), runs.serve(data_dir)
    wait_ready(a, port_a, runs)
    wait_ready(b, port_b, runs)
    server = the_one_server(data_dir)
    assert stop_with(a, signal.SIGTERM) == -signal.SIGTERM, runs.output()
    assert the_one_server(data_dir).pid == server.pid, "stopped while b still used it"
    httpx.get(f"http://127.0.0.1:{port_b}/ready", timeout=5).raise_for_status()
    assert stop_with(b, signal.SIGTERM) == -signal.SIGTERM, runs.output()
    assert_no_server(data_dir, server, runs)


def test_a_stale_postmaster_pid_does_not_block_the_start(runs: _Runs, tmp_path: Path) -> None:
    """postmaster.pid naming a dead process, or a live process that is not a
    postgres server (its pid reused, as after a container restart)."""
    data_dir = tmp_path / "data"
    assert runs.start(data_dir, "migrate").wait(timeout=_READY_S) == 0, runs.output()
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=_EXIT_S)
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        for pid in (dead.pid, stranger.pid):
            _plant_postmaster_pid(data_dir, pid)
            proc, port = runs.serve(data_dir)
            wait_ready(proc, port, runs)
            server = the_one_server(data_dir)
            assert stop_with(proc, signal.SIGTERM) == -signal.SIGTERM, runs.output()
            assert_no_server(data_dir, server, runs)
    finally:
        stranger.kill()
        stranger.wait(timeout=_EXIT_S)


def _plant_postmaster_pid(data_dir: Path, pid: int) -> None:
    """A postmaster.pid as a server that died without a shutdown leaves it."""
    lines = [str(pid), str(data_dir.resolve()), str(int(time.time())), "5432"]
    lines += [str(data_dir.resolve()), "", "  2158068        44", "ready   "]
    (data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
