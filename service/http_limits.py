"""HTTP limits that hold without a proxy in front: the uvicorn protocol, extended.

uvicorn with httptools limits none of what a hostile or broken client can send
before the application sees a request: headers of any size (httptools buffers a
header until it ends: 700 MiB were accepted), any number of them, a request line
of any length, and no time limit on sending the headers or the body, so a client
sending a byte a second holds its connection for ever. Its `limit_concurrency`
answers a bare text 503 without `Retry-After`. This subclass of its protocol adds
each limit where the bytes arrive, before any of them reach the application, and
costs a request a few attribute updates (`docs/performance.md` measures it).

The limits are `HttpLimits` (read from the environment once per process, see
`config.load_http_limits`); `serve` selects this protocol (`http=`).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, Final

import httptools
import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api.problems import PROBLEM_MEDIA_TYPE, problem_body
from service.config import HttpLimits, load_http_limits
from service.logs import Throttled
from service.metrics import HTTP_REFUSED

_refusals = Throttled(structlog.get_logger(__name__), every_s=10.0)

_CODES: Final = {
    408: "request_timeout",
    414: "uri_too_long",
    431: "header_too_large",
    503: "unavailable",
}


def refusal(status: int, detail: str, retry_after_s: int | None = None) -> bytes:
    """A whole HTTP/1.1 response, problem+json, that closes the connection."""
    reason = HTTPStatus(status).phrase
    body = msgspec.json.encode(problem_body(status, _CODES[status], reason, detail))
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"content-type: {PROBLEM_MEDIA_TYPE}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _peer(client: tuple[str, int] | None) -> str:
    return client[0] if client else "unknown"


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request it refuses."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on what a client may send and how slowly."""

    limits: HttpLimits = load_http_limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes received while a request's head is incomplete
        self._header_bytes = 0  # bytes of the headers parsed so far
        self._header_count = 0
        self._reading_head = True
        # One timer per connection, not two per request: the phase a request is in
        # sets a deadline (two attribute writes), and the timer, when it fires,
        # refuses the request if the deadline has passed or else sleeps again.
        self._deadline: float | None = None
        self._deadline_detail = ""
        self._timer: asyncio.TimerHandle | None = None
        self._tick_s = min(self.limits.header_timeout_s, self.limits.body_timeout_s)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            detail = "the server has too many connections open; retry shortly"
            self._refuse(503, detail, retry_after_s=1)
            return
        self._expect(self.limits.header_timeout_s, "the request headers took too long")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Refused):
                self._refuse(exc.__context__.status, exc.__context__.detail)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            self._upgrade()
            return
        if self._reading_head:  # what httptools buffers until a header ends
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes + self.limits.max_url_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(431, f"the headers exceed {limit} bytes")

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def _upgrade(self) -> None:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()

    # Parser callbacks (httptools calls them from inside `feed_data`).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = self._header_bytes = self._header_count = 0
        self._expect(self.limits.header_timeout_s, "the request headers took too long")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            raise _Refused(414, f"the request target exceeds {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Refused(431, f"a request has at most {self.limits.max_headers} headers")
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Refused(431, f"the headers exceed {self.limits.max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._expect(self.limits.body_timeout_s, "the request body took too long")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._deadline = None  # the timer finds no deadline when it fires, and stops
        super().on_message_complete()

    # The timer. It is never set further ahead than the shortest phase (`_tick_s`),
    # so it fires no later than any deadline set after it was armed: a deadline is
    # at least `_tick_s` after the moment it is set.
    def _expect(self, seconds: float, detail: str) -> None:
        """The current phase must end within `seconds`."""
        now = self.loop.time()
        self._deadline = now + seconds
        self._deadline_detail = detail
        if self._timer is None:
            self._timer = self.loop.call_at(now + self._tick_s, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        now = self.loop.time()
        if now >= self._deadline:
            self._timed_out(self._deadline_detail)
            return
        wake = min(self._deadline, now + self._tick_s)
        self._timer = self.loop.call_at(wake, self._check_deadline)

    def _disarm(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, detail: str) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self.transport.close()  # too late for a status: the response is under way
            return
        self._refuse(408, detail)

    def _refuse(self, status: int, detail: str, retry_after_s: int | None = None) -> None:
        """Answers `status` and closes; the application (if it started) sees a disconnect."""
        self._disarm()
        if self.transport.is_closing():
            return
        HTTP_REFUSED.labels(str(status)).inc()
        _refusals.warn("http_refused", status=status, detail=detail, client=_peer(self.client))
        self.transport.write(refusal(status, detail, retry_after_s))
        self.transport.close()
