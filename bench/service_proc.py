"""The service under test, started as `points-ledger serve` in its own process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil  # type: ignore[import-untyped]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """`python -m service serve` (the `points-ledger` entry point) on 127.0.0.1:port."""

    def __init__(
        self,
        data_dir: Path,
        admin_key: str,
        workers: int,
        log_path: Path,
        database_url: str | None = None,
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.command = [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--workers",
            str(workers),
            "--port",
            str(self.port),
        ]
        # The embedded server the harness started in `data_dir`, or a database of
        # its own choosing (a Citus coordinator's).
        database = {"DATABASE_URL": database_url} if database_url else {}
        self._start(
            log_path,
            **database,
            LEDGER_DATA_DIR=str(data_dir),
            LEDGER_ADMIN_KEY=admin_key,
            LEDGER_LOG_LEVEL="warning",
            LEDGER_RATE_LIMITS="off",  # the load generators are one client at 10^4 writes/s
            LEDGER_WEBHOOK_ALLOW_PRIVATE="1",  # the webhook scenarios' receiver is local
        )

    def _start(self, log_path: Path, **env_vars: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(env_vars, PYTHONUNBUFFERED="1")  # log lines reach the file as they happen
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the service exited with {self.proc.returncode}; see its log")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200 and len(self.pids()) >= self._expected_processes():
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the service did not answer {url} within {timeout_s:.0f} s")

    def _expected_processes(self) -> int:
        return 1 if self.workers == 1 else self.workers + 1

    def pids(self) -> list[int]:
        """The service's processes: uvicorn's supervisor and its workers."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root.pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout_s: float = 20.0) -> int:
        """Asks uvicorn to shut down gracefully; kills it if it will not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.pids()):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        psutil.Process(pid).kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class StackServer(Service):
    """One of `bench.stack_apps`' servers, under uvicorn with the service's options
    (one worker, httptools and uvloop picked by uvicorn, no access log)."""

    def __init__(self, app: str, dsn: str, log_path: Path) -> None:
        self.port = free_port()
        self.workers = 1
        self.command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"bench.stack_apps:{app}",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self._start(log_path, BENCH_DSN=dsn)
