"""SIGTERM and SIGINT in the `points-ledger` command.

Python's default for SIGTERM is to die on the spot, and uvicorn, after its
graceful shutdown, restores the handler it found and raises the signal again;
either way no `finally` and no atexit hook runs, and the embedded PostgreSQL
outlives the command. So the command turns both signals into an exception,
`Stopped`, lets every `finally` run, and then ends itself by the same signal.
Steps that must not be cut in half (starting and stopping the embedded server)
hold the first signal back until they are done.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """SIGTERM or SIGINT, raised wherever the main thread is when it arrives
    (under uvicorn: after its graceful shutdown, when it re-raises the signal).
    A BaseException, like KeyboardInterrupt, so that `except Exception` blocks
    let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def raise_stopped() -> None:
    """From now on SIGTERM and SIGINT raise `Stopped` in the main thread."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_stopped)


def end_by(signum: int) -> int:
    """Ends the process by `signum` with its default action, as it would have
    ended without our handler: a supervisor sees "killed by SIGTERM" (143 in a
    shell), not an exit code made up here. atexit does not run, so everything
    that must happen has happened by now; buffered output is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    return 128 + signum  # only reached if the signal is blocked


@contextmanager
def held() -> Iterator[None]:
    """Holds the first SIGTERM or SIGINT back until the block is done, then
    raises it again. A second one is not held, so a step that hangs can still
    be interrupted. Handlers are only set on the main thread; elsewhere this
    holds nothing back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        if len(caught) > 1:
            restore()
            signal.raise_signal(signum)

    previous = {sig: signal.signal(sig, hold) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    try:
        yield
    finally:
        if len(caught) < 2:
            restore()
        if len(caught) == 1:
            signal.raise_signal(caught[0])
