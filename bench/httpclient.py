"""A minimal HTTP/1.1 keep-alive client for our own JSON requests.

One connection carries one request at a time (no pipelining). It speaks only
what the service answers: a status line, headers, and a body framed by
Content-Length or chunked transfer encoding. That is all the load generator
needs, at a fraction of a general client's CPU per request.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

_CRLF2: Final = b"\r\n\r\n"


class HttpError(Exception):
    """The connection broke or the response could not be parsed."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.transport: Any = None  # asyncio's or uvloop's transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        if self.closed:
            raise HttpError("connection closed by the server")
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Connection:
    """One keep-alive connection to `host:port`, sending `headers` with every request."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._fixed = f"Host: {host}:{port}\r\n{fixed}".encode()
        self._proto: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(_Protocol, self.host, self.port)
        proto.transport = transport
        self._proto = proto
        return proto

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: bytes = b""
    ) -> tuple[int, bytes]:
        """Sends one request and returns (status, body); `headers` are this
        request's own header lines (each ending in CRLF), after the fixed ones.
        Reconnects if the connection was closed between requests; a failure
        mid-request raises."""
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connect()
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed + headers
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        assert proto.transport is not None
        proto.transport.write(head + b"\r\n" + (body or b""))
        try:
            return await _read_response(proto)
        except BaseException:
            self.close()
            raise


async def _read_response(proto: _Protocol) -> tuple[int, bytes]:
    buf = proto.buffer
    while (end := buf.find(_CRLF2)) < 0:
        await proto.more()
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    try:
        status = int(head[0].split(" ", 2)[1])
    except (IndexError, ValueError) as err:
        raise HttpError(f"bad status line {head[0]!r}") from err
    length = -1
    chunked = False
    close = False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            close = value.strip().lower() == "close"
    if chunked:
        body = await _read_chunked(proto)
    else:
        length = max(length, 0)
        while len(buf) < length:
            await proto.more()
        body = bytes(buf[:length])
        del buf[:length]
    if close and proto.transport is not None:
        proto.transport.close()
    return status, body


async def _read_chunked(proto: _Protocol) -> bytes:
    buf = proto.buffer
    out = bytearray()
    while True:
        while (end := buf.find(b"\r\n")) < 0:
            await proto.more()
        size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
        del buf[: end + 2]
        while len(buf) < size + 2:
            await proto.more()
        out += buf[:size]
        del buf[: size + 2]
        if size == 0:
            return bytes(out)
