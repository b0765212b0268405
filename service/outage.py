"""A database that is down or frozen is an outage, not a bug: it gets 503
`unavailable` with `Retry-After`, one warning in the log every few seconds however
many requests fail, and a count in the metrics.

The service recovers by itself: the pool replaces a broken connection when it is
next taken, so no restart is needed once the database answers again.
"""

from __future__ import annotations

from typing import Final, Literal

import asyncpg
import structlog

from service.errors import Unavailable
from service.logs import Throttled
from service.metrics import DB_UNAVAILABLE, STATEMENT_TIMEOUTS

log = structlog.get_logger(__name__)

Fault = Literal["timeout", "unreachable"]

TIMED_OUT: Final = (TimeoutError, asyncpg.QueryCanceledError)
UNREACHABLE: Final = (
    OSError,  # refused, reset, no route: the server or the network is gone
    asyncpg.PostgresConnectionError,  # class 08, and a connection closed mid-statement
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # only "connection is closed" / "pool is closing": see below
)
_WARN_EVERY_S: Final = 10.0


def fault_of(exc: BaseException) -> Fault | None:
    """What kind of outage `exc` reports, or None when it is not one (a bug).

    An error raised while handling an outage is that outage: the ROLLBACK that a
    transaction sends after a statement timed out or lost its server fails in turn,
    and what surfaces is the second error, with the first as its context.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        fault = _fault_of_one(cause)
        if fault is not None:
            return fault
        cause = cause.__cause__ or cause.__context__
    return None


def _fault_of_one(exc: BaseException) -> Fault | None:
    if isinstance(exc, TIMED_OUT):
        return "timeout"
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc)
        return "unreachable" if "closed" in text or "closing" in text else None
    if isinstance(exc, asyncpg.InternalClientError) and "cannot switch to state" in str(exc):
        # A connection whose server went away mid-statement, then used again before
        # asyncpg noticed: seen when PostgreSQL is stopped under load. The service
        # never shares a connection between tasks, so here it means the outage.
        return "unreachable"
    return "unreachable" if isinstance(exc, UNREACHABLE) else None


_warning = Throttled(log, _WARN_EVERY_S)


def report(exc: BaseException, fault: Fault, where: str) -> None:
    """Counts an outage met at `where` in the metrics, and logs it (throttled)."""
    (STATEMENT_TIMEOUTS if fault == "timeout" else DB_UNAVAILABLE).inc()
    _warning.warn("database_unavailable", fault=fault, where=where, error=type(exc).__name__)


def unavailable(exc: BaseException, fault: Fault, where: str) -> Unavailable:
    """`report`s the outage; the error a request answers it with."""
    report(exc, fault, where)
    if fault == "timeout":
        return Unavailable("the database did not answer in time; retry shortly", 1)
    return Unavailable("the database cannot be reached; retry shortly", 2)
