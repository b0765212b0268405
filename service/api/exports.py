"""What the export endpoints share (the handlers live with their resources: offsets.py,
supermarket.py, reports.py): the `format` and range parameters, and the response that
sends a finished sheet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO, Annotated, Final, Literal

from litestar import Response
from litestar.params import QueryParameter
from litestar.response import Stream

from service.api.deps import instant
from service.errors import ValidationFailed
from service.exports.service import Export

_CHUNK: Final = 256 * 1024

ExportFormat = Annotated[
    Literal["csv", "xlsx"],
    QueryParameter(
        name="format",
        description="csv (UTF-8 with BOM, RFC 4180) or xlsx (Office Open XML).",
    ),
]


def span(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """[from, to) of an export: both are required (a settlement covers a stated
    period), RFC 3339 with an offset; the sheet checks the length."""
    since, until = instant(start, "from"), instant(end, "to")
    if since is None or until is None:
        raise ValidationFailed(
            "an export needs `from` and `to` (RFC 3339 with an offset), "
            "e.g. from=2026-11-01T00:00:00+08:00&to=2026-12-01T00:00:00+08:00"
        )
    return since, until


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            yield chunk
    finally:
        file.close()


def sheet_response(export: Export) -> Response[bytes] | Stream:
    """The sheet as an attachment (its file was complete before this was sent): in
    one body up to a chunk, streamed from its file beyond. A `Stream` takes the
    handler's media type over its own (Litestar 2.25), so a handler that also answers
    JSON (the summary, which is always small) gets its CSV in one body."""
    headers = {"Content-Disposition": f'attachment; filename="{export.filename}"'}
    if export.size <= _CHUNK:
        with export.file:
            content = export.file.read()
        return Response(content, media_type=export.media_type, headers=headers)
    headers["Content-Length"] = str(export.size)
    return Stream(_chunks(export.file), media_type=export.media_type, headers=headers)
