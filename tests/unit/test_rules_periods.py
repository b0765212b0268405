"""Calendar periods in the community's time zone: boundaries, keys, neighbours, expiry.

Asia/Shanghai is UTC+8 all year, so 2026-11-30T16:30Z is already 1 December there:
caps, statistics and schedules must count it in December.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import ValidationFailed
from service.rules.periods import (
    PERIOD_KINDS,
    PeriodKind,
    current_keys,
    ended_between,
    expiry_of,
    following,
    local_fixed,
    period_from_key,
    period_of,
    previous,
    stat_keys,
)
from tests.helpers import SH

SHANGHAI = ZoneInfo(SH)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("kind", "key", "start", "end"),
    [
        ("day", "2026-12-01", local(2026, 12, 1), local(2026, 12, 2)),
        ("week", "2026-W49", local(2026, 11, 30), local(2026, 12, 7)),
        ("month", "2026-12", local(2026, 12, 1), local(2027, 1, 1)),
        ("year", "2026", local(2026, 1, 1), local(2027, 1, 1)),
    ],
)
def test_late_utc_evening_is_the_next_local_day(
    kind: PeriodKind, key: str, start: datetime, end: datetime
) -> None:
    period = period_of(kind, utc(2026, 11, 30, 16, 30), SH)
    assert (period.key, period.start, period.end) == (key, start, end)
    assert period.start.utcoffset() == timedelta(hours=8)


def test_the_last_second_of_a_local_month_stays_in_it() -> None:
    at = utc(2026, 11, 30, 15, 59, 59)  # 23:59:59 on 30 November in Shanghai
    assert period_of("month", at, SH).key == "2026-11"
    assert period_of("month", at + timedelta(seconds=1), SH).key == "2026-12"


def test_the_same_instant_is_in_a_different_day_elsewhere() -> None:
    at = utc(2026, 11, 30, 16, 30)
    assert period_of("day", at, "UTC").key == "2026-11-30"
    assert period_of("day", at, "America/New_York").key == "2026-11-30"
    assert period_of("day", at, SH).key == "2026-12-01"


def test_iso_weeks_start_on_monday_and_use_the_iso_year() -> None:
    week = period_of("week", local(2027, 1, 1, 12), SH)  # a Friday
    assert week.key == "2026-W53"
    assert week.start == local(2026, 12, 28) and week.end == local(2027, 1, 4)
    assert period_of("week", local(2027, 1, 4), SH).key == "2027-W01"


def test_months_have_their_own_lengths() -> None:
    february = period_of("month", local(2028, 2, 10), SH)
    assert february.end - february.start == timedelta(days=29)  # 2028 is a leap year


def test_previous_and_following_cross_year_boundaries() -> None:
    january = period_of("month", local(2027, 1, 15), SH)
    assert previous(january).key == "2026-12"
    assert following(previous(january)) == january
    assert previous(period_of("week", local(2027, 1, 4), SH)).key == "2026-W53"
    assert following(period_of("day", local(2026, 12, 31), SH)).key == "2027-01-01"
    assert previous(period_of("year", local(2027, 6, 1), SH)).key == "2026"


def test_days_are_23_hours_when_clocks_spring_forward() -> None:
    day = period_of("day", datetime(2026, 3, 29, 12, tzinfo=UTC), "Europe/Berlin")
    assert day.end - day.start == timedelta(hours=23)


@pytest.mark.parametrize("key", ["2026-11-23", "2026-W48", "2026-11", "2026", "2026-W53"])
def test_keys_name_their_period(key: str) -> None:
    period = period_from_key(key, SH)
    assert period.key == key
    assert period_of(period.kind, period.start, SH) == period


@pytest.mark.parametrize("key", ["2026-13", "2026-W54", "2027-W53", "26-11", "2026-02-30", ""])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationFailed, match="not a period key"):
        period_from_key(key, SH)


def test_ended_between_lists_what_a_job_owes_after_downtime() -> None:
    # Last ran just after October closed; back on 3 January: Nov and Dec are owed.
    owed = ended_between("month", local(2026, 11, 1, 0, 5), local(2027, 1, 3), SH)
    assert [p.key for p in owed] == ["2026-11", "2026-12"]


def test_ended_between_at_exact_boundaries() -> None:
    owed = ended_between("day", local(2026, 12, 1), local(2026, 12, 3), SH)
    assert [p.key for p in owed] == ["2026-12-01", "2026-12-02"]
    assert ended_between("day", local(2026, 12, 3), local(2026, 12, 3), SH) == []


def test_ended_between_is_bounded() -> None:
    owed = ended_between("day", local(2020, 1, 1), local(2026, 1, 1), SH, limit=10)
    assert len(owed) == 10 and owed[0].key == "2020-01-01"


def test_points_expire_at_the_end_of_the_next_local_year() -> None:
    assert expiry_of(local(2026, 6, 1), SH) == local(2028, 1, 1)
    assert expiry_of(local(2026, 6, 1), SH) == utc(2027, 12, 31, 16)


def test_expiry_follows_the_local_year_of_earning() -> None:
    # 2026-12-31T16:30Z is already 2027 in Shanghai: valid until the end of 2028.
    assert expiry_of(utc(2026, 12, 31, 16, 30), SH) == local(2029, 1, 1)
    assert expiry_of(utc(2026, 12, 31, 15, 59), SH) == local(2028, 1, 1)


def test_stat_keys_cover_current_and_previous_periods() -> None:
    keys = stat_keys(utc(2026, 11, 30, 16, 30), SH)
    assert keys == [
        "2026-12-01",
        "2026-11-30",
        "2026-W49",
        "2026-W48",
        "2026-12",
        "2026-11",
        "2026",
        "2025",
    ]
    assert current_keys(utc(2026, 11, 30, 16, 30), SH) == [
        "2026-12-01",
        "2026-W49",
        "2026-12",
        "2026",
    ]


def test_local_fixed_keeps_the_instant_and_the_local_offset() -> None:
    at = local_fixed(utc(2026, 11, 30, 16, 30), SH)
    assert at == utc(2026, 11, 30, 16, 30)
    assert (at.hour, at.utcoffset()) == (0, timedelta(hours=8))
    assert local_fixed(at, "UTC").tzinfo is UTC


def test_unknown_zones_and_naive_times_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="not an IANA time zone"):
        period_of("day", utc(2026, 1, 1), "Mars/Olympus")
    with pytest.raises(ValueError, match="aware"):
        period_of("day", datetime(2026, 1, 1), SH)


instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


@given(instants, st.sampled_from(PERIOD_KINDS), st.sampled_from([SH, "Europe/Berlin", "UTC"]))
def test_periods_tile_time(at: datetime, kind: PeriodKind, tz: str) -> None:
    period = period_of(kind, at, tz)
    assert period.contains(at)
    assert previous(period).end == period.start
    assert following(period).start == period.end
    assert period_from_key(period.key, tz) == period
