"""Calendar periods in a community's time zone: what caps, statistics and schedules count in.

A period is a half-open interval `start <= t < end` of local calendar time: a day, an
ISO week (Monday to Monday), a month or a year. Which period an event counts in is
decided by its `occurred_at` seen in the community's IANA zone, so 2026-11-30T16:30Z
is already December in Asia/Shanghai. Keys name periods unambiguously across kinds:
"2026-11-23" (day), "2026-W48" (ISO week, ISO year), "2026-11" (month), "2026" (year).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from service.errors import ValidationFailed

PeriodKind = Literal["day", "week", "month", "year"]
PERIOD_KINDS: Final[tuple[PeriodKind, ...]] = get_args(PeriodKind)
# How long each kind is, for "not shorter than" comparisons.
PERIOD_ORDER: Final[dict[PeriodKind, int]] = {"day": 0, "week": 1, "month": 2, "year": 3}

_KEY_PATTERNS: Final[tuple[tuple[PeriodKind, re.Pattern[str]], ...]] = (
    ("day", re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")),
    ("week", re.compile(r"^(\d{4})-W(\d{2})$")),
    ("month", re.compile(r"^(\d{4})-(\d{2})$")),
    ("year", re.compile(r"^(\d{4})$")),
)


class Period(msgspec.Struct, frozen=True, kw_only=True):
    """One calendar period; `start` and `end` are local times of the zone `tz`, with
    the fixed UTC offset in force at that moment."""

    kind: PeriodKind
    key: str
    start: datetime
    end: datetime
    tz: str

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@lru_cache(maxsize=256)
def zone(tz: str) -> ZoneInfo:
    """The IANA zone `tz`; an unknown name is a validation error."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(f"{tz!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None


def _first_day(kind: PeriodKind, day: date) -> date:
    match kind:
        case "day":
            return day
        case "week":
            return day - timedelta(days=day.weekday())
        case "month":
            return day.replace(day=1)
        case "year":
            return day.replace(month=1, day=1)


def _next_first_day(kind: PeriodKind, first: date) -> date:
    match kind:
        case "day":
            return first + timedelta(days=1)
        case "week":
            return first + timedelta(days=7)
        case "month":
            year, month = divmod(first.month, 12)
            return date(first.year + year, month + 1, 1)
        case "year":
            return date(first.year + 1, 1, 1)


def _key(kind: PeriodKind, first: date) -> str:
    match kind:
        case "day":
            return first.isoformat()
        case "week":
            iso = first.isocalendar()
            return f"{iso.year}-W{iso.week:02d}"
        case "month":
            return f"{first.year}-{first.month:02d}"
        case "year":
            return str(first.year)


def _period(kind: PeriodKind, first: date, tz: str) -> Period:
    z = zone(tz)
    nxt = _next_first_day(kind, first)
    start = datetime(first.year, first.month, first.day, tzinfo=z)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=z)
    # Fixed offsets, not the ZoneInfo: Python subtracts and compares datetimes that
    # share a tzinfo by wall clock, which is wrong across a DST change.
    return Period(kind=kind, key=_key(kind, first), start=_fixed(start), end=_fixed(end), tz=tz)


def local_fixed(at: datetime, tz: str) -> datetime:
    """`at` in the zone `tz`, with a fixed UTC offset (the form CEL timestamps take)."""
    return _fixed(at.astimezone(zone(tz)))


def _fixed(local: datetime) -> datetime:
    offset = local.utcoffset() or timedelta(0)
    return local.replace(tzinfo=timezone(offset) if offset else UTC)


def period_of(kind: PeriodKind, at: datetime, tz: str) -> Period:
    """The period of `kind` that contains the instant `at` (aware) in the zone `tz`."""
    if at.tzinfo is None:
        raise ValueError("period_of needs an aware datetime")
    local = at.astimezone(zone(tz)).date()
    return _period(kind, _first_day(kind, local), tz)


def previous(period: Period) -> Period:
    """The period of the same kind just before `period`."""
    last_day = period.start.date() - timedelta(days=1)
    return _period(period.kind, _first_day(period.kind, last_day), period.tz)


@lru_cache(maxsize=256)
def around(kind: PeriodKind, at: datetime, tz: str) -> tuple[Period, Period]:
    """The period of `kind` containing `at` and the one before it: what every rule of
    that period kind reads for one event, computed once instead of once per rule."""
    current = period_of(kind, at, tz)
    return current, previous(current)


def following(period: Period) -> Period:
    """The period of the same kind just after `period`."""
    return _period(period.kind, _next_first_day(period.kind, period.start.date()), period.tz)


def period_from_key(key: str, tz: str) -> Period:
    """The period a key names ("2026-11-23", "2026-W48", "2026-11", "2026")."""
    for kind, pattern in _KEY_PATTERNS:
        match = pattern.match(key)
        if match is None:
            continue
        parts = [int(g) for g in match.groups()]
        try:
            first = _first_of_key(kind, parts)
        except ValueError:
            break
        return _period(kind, first, tz)
    raise ValidationFailed(f"{key!r} is not a period key (2026-11-23, 2026-W48, 2026-11, 2026)")


def _first_of_key(kind: PeriodKind, parts: list[int]) -> date:
    if kind == "week":
        return date.fromisocalendar(parts[0], parts[1], 1)
    month, day = [*parts[1:], 1, 1][:2]
    return date(parts[0], month, day)


def ended_between(
    kind: PeriodKind, after: datetime, until: datetime, tz: str, *, limit: int = 400
) -> list[Period]:
    """Periods whose end lies in `(after, until]`, oldest first, at most `limit`.

    This is what a scheduled job owes after being down: every period that finished
    since it last ran. `limit` bounds catching up after a very long outage.
    """
    periods: list[Period] = []
    current = period_of(kind, after, tz)
    if current.end <= after:  # `after` is exactly a boundary: `current` starts there
        current = following(current)
    while current.end <= until and len(periods) < limit:
        periods.append(current)
        current = following(current)
    return periods


def stat_keys(at: datetime, tz: str) -> list[str]:
    """The keys of the periods of every kind containing `at`, and of the ones before them.

    The eight keys whose member statistics and rule usage the engine may read for an
    evaluation at `at`: fetch these and no query is missed.
    """
    keys: list[str] = []
    for kind in PERIOD_KINDS:
        current = period_of(kind, at, tz)
        keys += [current.key, previous(current).key]
    return keys


def countable_keys(at: datetime, tz: str) -> list[str] | None:
    """`stat_keys(at, tz)`, or None where they do not exist: periods are dates, so
    the local year of `at` must lie within 2..9998 for its periods and the ones
    before to have ends."""
    try:
        return stat_keys(at, tz)
    except (OverflowError, ValueError):
        return None


def countable(at: datetime, tz: str) -> bool:
    """Whether an event at `at` can be counted (`countable_keys` exists)."""
    return countable_keys(at, tz) is not None


def current_keys(at: datetime, tz: str) -> list[str]:
    """The keys of the day, week, month and year containing `at`: where a posting counts."""
    return [period_of(kind, at, tz).key for kind in PERIOD_KINDS]


def expiry_of(earned_at: datetime, tz: str) -> datetime:
    """When points earned at `earned_at` expire under `year_end_plus_one`.

    Points earned in local year Y expire at the end of Y+1: the returned instant is
    local midnight starting 1 January Y+2, the first moment they are no longer valid.
    """
    year = earned_at.astimezone(zone(tz)).year
    return period_from_key(str(year + 2), tz).start
