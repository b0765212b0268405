"""Request id, access log and request metrics, in one layer: every log line of a
request carries its id, and every request is counted and timed by route template."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram, multiprocess

log = structlog.get_logger("access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LABELS = ("method", "path", "status_code", "app_name")
_APP = "points_ledger"

REQUESTS = Counter("ledger_requests_total", "Total requests", _LABELS)
ERRORS = Counter("ledger_requests_error_total", "Requests answered with a 5xx", _LABELS)
DURATION = Histogram("ledger_request_duration_seconds", "Request duration, in seconds", _LABELS)
# With several workers (PROMETHEUS_MULTIPROC_DIR, see `serve`), the live workers' sum.
IN_PROGRESS = Gauge(
    "ledger_requests_in_progress",
    "Requests being served",
    ("method", "path", "app_name"),
    multiprocess_mode="livesum",
)


def _request_id(scope: HTTPScope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _SAFE_ID.match(given):
                return given
            break
    return os.urandom(16).hex()


# Labelled series, looked up once: `labels()` takes a lock and builds its key on
# every call. Bounded: `template` is one of the app's route templates (this layer
# runs only for matched routes) or `(unmatched)` with a known method.
_Series = tuple[Counter, Histogram, Counter | None]
_SERIES: dict[tuple[str, str, int], _Series] = {}
_IN_PROGRESS: dict[tuple[str, str], Gauge] = {}


def _series(method: str, template: str, status: int) -> _Series:
    """(requests counter, duration histogram, 5xx counter or None) of one label set."""
    key = (method, template, status)
    found = _SERIES.get(key)
    if found is None:
        labels = (method, template, str(status), _APP)
        failed = ERRORS.labels(*labels) if status >= 500 else None
        found = _SERIES[key] = (REQUESTS.labels(*labels), DURATION.labels(*labels), failed)
    return found


def _in_progress(method: str, template: str) -> Gauge:
    found = _IN_PROGRESS.get((method, template))
    if found is None:
        found = _IN_PROGRESS[(method, template)] = IN_PROGRESS.labels(method, template, _APP)
    return found


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"


def refused_by_router(scope: HTTPScope, status: int) -> str:
    """A request the router refused (no such path, or not that method) never reaches
    `RequestContext`, which runs per route: its access line and its count (under
    the path `(unmatched)`: raw paths would make a series each) are made here.
    Returns its request id, for the response's `X-Request-ID`."""
    request_id = _request_id(scope)
    method = scope["method"] if scope["method"] in _METHODS else "OTHER"
    counted, _, failed = _series(method, UNMATCHED, status)
    counted.inc()
    if failed is not None:
        failed.inc()
    log.info("request", request_id=request_id, method=method, path=scope["path"], status=status)
    return request_id


def worker_started() -> None:
    """With several workers (PROMETHEUS_MULTIPROC_DIR, see `serve`): drops from the
    in-progress sum the workers that died without shutting down (killed for memory,
    or replaced by uvicorn when hung); their files would otherwise count forever."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def worker_stopping() -> None:
    """This worker's live gauges leave the sum (its counters stay counted)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not one of our dead workers
    return True


class RequestContext:
    """Binds `request_id` (from `X-Request-ID` or new) and echoes it, logs one access
    line, and records the request in the Prometheus metrics.

    One middleware instead of three keeps the per-request cost down: each ASGI layer
    wraps `send` once more, and the hot endpoints pay that on every call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        await self._http(scope, receive, send)

    async def _http(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        method = scope["method"]
        template: str = scope.get("path_template", scope["path"])
        in_progress = _in_progress(method, template)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            in_progress.dec()
            elapsed = time.perf_counter() - started
            counted, timed, failed = _series(method, template, status)
            counted.inc()
            timed.observe(elapsed)
            if failed is not None:
                failed.inc()
            log.info(
                "request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
