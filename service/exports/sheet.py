"""Pure: the rows of the settlement sheets and of the summary, in the community's
language, as cells that the CSV and XLSX writers (writers.py) know how to write.

A cell is text, an integer, a `Yuan` (an amount of fen shown as yuan: the writers
turn it into exact text or a formula, never a float computed here) or None (empty).
Column names and the words of a sheet (statuses, kinds, totals) come in every
language of service/i18n, and each language names the same columns in the same
order, so that a billing system that reads by position reads either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from service.errors import ValidationFailed
from service.i18n import LANGUAGES, Language
from service.offsets.views import OffsetOut, OffsetTotals


class Yuan(msgspec.Struct, frozen=True):
    """An amount of fen shown as yuan; it always stands right after its fen cell."""

    fen: int


Cell = str | int | Yuan | None
Row = Sequence[Cell]

MAX_DAYS: Final = 366
MAX_ROWS: Final = 100_000


def words(language: str, table: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """`table` (key → its words in each of LANGUAGES, in that order) in `language`;
    an unknown language is a bug (the database accepts only these)."""
    index = LANGUAGES.index(_known(language))
    return {key: texts[index] for key, texts in table.items()}


def _known(language: str) -> Language:
    for known in LANGUAGES:
        if known == language:
            return known
    raise ValueError(f"no sheet words in language {language!r}; use one of {LANGUAGES}")


_EARLIEST: Final = datetime(2, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(9998, 12, 31, tzinfo=UTC)


def check_range(start: datetime, end: datetime) -> None:
    """A sheet covers [start, end), at most MAX_DAYS long, so one request cannot
    read years of history."""
    if start < _EARLIEST or end > _LATEST:
        # Local dates of the sheet (its file name, its rows) must exist in every
        # time zone: years 2 … 9998, as for the rules' periods.
        raise ValidationFailed("`from` and `to` must lie between the years 2 and 9998")
    if end <= start:
        raise ValidationFailed("`to` must be after `from`")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValidationFailed(
            f"an export covers at most {MAX_DAYS} days: ask for a shorter range, "
            "e.g. one month per request"
        )


def check_rows(count: int) -> None:
    """Raised while a sheet is being written, before anything is sent."""
    if count > MAX_ROWS:
        raise ValidationFailed(
            f"more than {MAX_ROWS} rows in this range: ask for a shorter range",
            max_rows=MAX_ROWS,
        )


def local_time(at: datetime | None, tz: ZoneInfo) -> str | None:
    """RFC 3339 with the community's offset, to the second (`2026-11-23T09:30:00+08:00`)."""
    return None if at is None else at.astimezone(tz).isoformat(timespec="seconds")


# The settlement sheet of offsets (结算单) --------------------------------------

OFFSET_COLUMNS: Final = {
    "bill": ("账单号", "bill id"),
    "household": ("房号", "household"),
    "member": ("居民", "member"),
    "property_company": ("物业公司", "property company"),
    "bill_amount_fen": ("账单金额（分）", "bill amount (fen)"),
    "points": ("积分", "points"),
    "offset_fen": ("抵扣金额（分）", "offset (fen)"),
    "offset_yuan": ("抵扣金额（元）", "offset (yuan)"),
    "status": ("状态", "status"),
    "created_at": ("创建时间", "created at"),
    "applied_at": ("抵扣时间", "applied at"),
    "cancelled_at": ("撤销/过期时间", "cancelled or expired at"),
}
OFFSET_STATUS: Final = {
    "held": ("冻结中", "held"),
    "applied": ("已抵扣", "applied"),
    "cancelled": ("已撤销", "cancelled"),
    "expired": ("已过期", "expired"),
}
TOTAL_COLUMNS: Final = {
    "total": ("合计", "totals"),
    "count": ("笔数", "count"),
    "points": ("积分", "points"),
    "fen": ("金额（分）", "amount (fen)"),
    "yuan": ("金额（元）", "amount (yuan)"),
}
OFFSET_TOTALS: Final = {
    "applied": ("已抵扣（应结算）", "applied (to settle)"),
    "held": ("冻结中（未结算）", "held (not yet settled)"),
}


def offset_header(language: str) -> list[Cell]:
    return list(words(language, OFFSET_COLUMNS).values())


def offset_row(offset: OffsetOut, language: str, tz: ZoneInfo) -> list[Cell]:
    """One offset as it stands: its bill id is the id the billing system sent."""
    status = words(language, OFFSET_STATUS)[offset.status]
    return [
        offset.id,
        offset.household,
        offset.member,
        offset.property_company,
        offset.bill_amount_fen,
        offset.points,
        offset.offset_fen,
        Yuan(offset.offset_fen),
        status,
        local_time(offset.created_at, tz),
        local_time(offset.applied_at, tz),
        local_time(offset.cancelled_at, tz),
    ]


def offset_totals(totals: OffsetTotals, language: str) -> list[list[Cell]]:
    """A blank row, the totals' own header, then applied and held: the numbers of
    `GET …/offsets` for the same selection, as given."""
    label = words(language, OFFSET_TOTALS)
    return [
        [],
        list(words(language, TOTAL_COLUMNS).values()),
        [
            label["applied"],
            totals.applied_count,
            totals.applied_points,
            totals.applied_fen,
            Yuan(totals.applied_fen),
        ],
        [
            label["held"],
            totals.held_count,
            totals.held_points,
            totals.held_fen,
            Yuan(totals.held_fen),
        ],
    ]
