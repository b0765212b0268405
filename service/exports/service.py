"""Export use cases: each sheet read in one read-only snapshot (REPEATABLE READ), so
its rows and its totals describe the same moment, page by page into a temporary
file, which is handed back open and already unlinked (nothing is left on disk
however the download ends).

The settlement sheet selects what `GET …/offsets` selects, through the same queries:
every offset *created* in [from, to) (of one property company, or all), newest
first, each with its status now (held, applied, cancelled or expired) and when it
was applied and cancelled; its totals are `offset_totals` for that selection, the
very numbers of the list's `totals`: applied (posted, not reversed) and held
(pending, not expired). Cancelled and expired offsets are listed and counted in
neither.

Writing a page of rows is synchronous library work, so it runs in a worker thread:
a large sheet does not stall the event loop that serves other requests.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from service.db import Conn
from service.exports import clearing, redemptions, sheet, store, summary
from service.exports.sheet import Row
from service.exports.writers import CSV_TYPE, XLSX_TYPE, CsvSheet, SheetWriter, XlsxSheet
from service.i18n import DEFAULT_LANGUAGE
from service.ledger import reads
from service.network.model import SettlementOut
from service.offsets import store as offsets_store
from service.offsets.views import OffsetTotals, offset_out
from service.reports import service as reports
from service.rules.book import RuleBook

Format = Literal["csv", "xlsx"]
_MEDIA: Final = {"csv": CSV_TYPE, "xlsx": XLSX_TYPE}
_OFFSET_WIDTHS: Final = [16, 12, 12, 14, 14, 10, 14, 14, 10, 26, 26, 26]
_REDEMPTION_WIDTHS: Final = [8, 16, 16, 10, 12, 40, 10, 26]
_TITLES: Final = {
    "settlement": ("结算单", "settlement"),
    "redemptions": ("兑换明细", "redemptions"),
    "summary": ("汇总", "summary"),
    "clearing": ("社区间结算单", "district settlement"),
}
_CLEARING_WIDTHS: Final = [14, 26, 26, 14, 14, 10, 10, 12, 12, 14, 14, 14, 14, 8]


class Export(msgspec.Struct, frozen=True, kw_only=True):
    """A finished sheet: an open file positioned at its start, unlinked already."""

    file: IO[bytes]
    size: int
    media_type: str
    filename: str


Write = Callable[[Sequence[Row]], Awaitable[None]]
Fill = Callable[[Write], Awaitable[None]]


async def _export(fmt: Format, stem: str, title: str, widths: list[int], fill: Fill) -> Export:
    """Runs `fill`, which reads pages and passes each to the `write` it is given,
    into a temporary file of `fmt`; refusals raised by `fill` leave nothing behind.
    File work runs in worker threads, as the writing does."""
    path = await asyncio.to_thread(_new_file, fmt)
    try:
        writer = await asyncio.to_thread(_writer, fmt, path, title, widths)
        try:
            await fill(lambda rows: asyncio.to_thread(_write_rows, writer, rows))
        finally:
            await asyncio.to_thread(writer.close)
        handle, size = await asyncio.to_thread(_reopened, path)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return Export(file=handle, size=size, media_type=_MEDIA[fmt], filename=f"{stem}.{fmt}")


def _new_file(fmt: Format) -> Path:
    fd, name = tempfile.mkstemp(prefix="export-", suffix=f".{fmt}")
    os.close(fd)
    return Path(name)


def _writer(fmt: Format, path: Path, title: str, widths: list[int]) -> SheetWriter:
    return CsvSheet(path) if fmt == "csv" else XlsxSheet(path, title, widths)


def _reopened(path: Path) -> tuple[IO[bytes], int]:
    """The finished file open for reading and already unlinked, and its size."""
    handle = path.open("rb")
    path.unlink()
    return handle, os.fstat(handle.fileno()).st_size


def _write_rows(writer: SheetWriter, rows: Sequence[Row]) -> None:
    for row in rows:
        writer.row(row)


def _stem(kind: str, community: str, scope: str | None, start: datetime, tz: ZoneInfo) -> str:
    day = start.astimezone(tz).strftime("%Y%m%d")
    return f"{kind}-{community}-{scope or 'all'}-{day}"


async def offsets_sheet(
    conn: Conn,
    book: RuleBook,
    community: str,
    company: str | None,
    span: tuple[datetime, datetime],
    fmt: Format,
) -> Export:
    """The settlement sheet (结算单) of offsets created in `span`, [from, to)."""
    start, end = span
    sheet.check_range(start, end)
    language = await book.language(conn, community)
    tz = ZoneInfo(await book.timezone(conn, community))

    async def fill(write: Write) -> None:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            now = await store.snapshot_now(conn)
            await write([sheet.offset_header(language)])
            before, count = reads.decode_cursor(None), 0
            while rows := await offsets_store.list_offsets(
                conn, community, company, start, end, before, store.PAGE_ROWS
            ):
                count += len(rows)
                sheet.check_rows(count)
                await write([sheet.offset_row(offset_out(r, now), language, tz) for r in rows])
                before = rows[-1]["seq"]
            totals = await offsets_store.offset_totals(conn, community, company, start, end)
            await write(sheet.offset_totals(OffsetTotals(**dict(totals)), language))

    stem = _stem("settlement", community, company, start, tz)
    title = sheet.words(language, _TITLES)["settlement"]
    return await _export(fmt, stem, title, _OFFSET_WIDTHS, fill)


async def redemptions_sheet(
    conn: Conn,
    book: RuleBook,
    community: str,
    store_id: str | None,
    span: tuple[datetime, datetime],
    fmt: Format,
) -> Export:
    """A store's (or every store's) redemptions and returns made in `span`, oldest
    first, then their totals counted from those rows."""
    start, end = span
    sheet.check_range(start, end)
    language = await book.language(conn, community)
    tz = ZoneInfo(await book.timezone(conn, community))

    async def fill(write: Write) -> None:
        done, count = redemptions.Totals(), 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await write([redemptions.header(language)])
            async for page in store.movements(conn, community, store_id, start, end):
                count += len(page)
                sheet.check_rows(count)
                for movement in page:
                    done.add(movement)
                await write([redemptions.row(m, language, tz) for m in page])
        await write(redemptions.totals(done, language))

    stem = _stem("redemptions", community, store_id, start, tz)
    title = sheet.words(language, _TITLES)["redemptions"]
    return await _export(fmt, stem, title, _REDEMPTION_WIDTHS, fill)


async def summary_sheet(
    conn: Conn, book: RuleBook, community: str, span: tuple[datetime, datetime], now: datetime
) -> Export:
    """The summary of `GET …/reports/summary` for `span`, one row per asset, as CSV."""
    start, end = span
    language = await book.language(conn, community)
    tz = ZoneInfo(await book.timezone(conn, community))
    active = await book.active(conn, community)
    found = await reports.summary(conn, community, start, end, active.rule_set, now)

    async def fill(write: Write) -> None:
        await write([summary.header(language), *summary.rows(found, language, tz)])

    title = sheet.words(language, _TITLES)["summary"]
    return await _export("csv", f"summary-{community}", title, [], fill)


async def settlement_sheet(settlement: SettlementOut, timezone: str, fmt: Format) -> Export:
    """A district's settlement (SPEC section 16) as a sheet: one row per ordered pair of
    communities, then the totals (net points and minutes sum to zero). In the service's
    default language: a district spans communities that may each have chosen theirs;
    times in `timezone` (its communities')."""
    tz = ZoneInfo(timezone)

    async def fill(write: Write) -> None:
        await write(
            [
                clearing.header(DEFAULT_LANGUAGE),
                *clearing.rows(settlement, tz),
                *clearing.totals(settlement, DEFAULT_LANGUAGE),
            ]
        )

    day = settlement.from_.astimezone(tz).strftime("%Y%m%d")
    stem = f"district-settlement-{settlement.district}-{settlement.id}-{day}"
    title = sheet.words(DEFAULT_LANGUAGE, _TITLES)["clearing"]
    return await _export(fmt, stem, title, _CLEARING_WIDTHS, fill)
