"""Stamps (UTC epoch µs) and their ISO 8601 form, exact to the microsecond."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.utc import from_stamp_us, iso_us, now_us, parse_time_us, to_stamp_us

stamps = st.integers(0, 253_402_300_799_999_999)  # up to 9999-12-31T23:59:59.999999Z


def test_now_us_is_the_wall_clock_in_microseconds() -> None:
    before = time.time_ns() // 1000
    now = now_us()
    assert isinstance(now, int) and before <= now <= time.time_ns() // 1000


@given(stamps)
def test_iso_and_datetime_round_trip_exactly(stamp: int) -> None:
    assert parse_time_us(iso_us(stamp)) == stamp
    assert to_stamp_us(from_stamp_us(stamp)) == stamp
    assert parse_time_us(str(stamp)) == stamp


@given(st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
def test_stamp_round_trip(when: datetime) -> None:
    assert from_stamp_us(to_stamp_us(when)) == when


def test_stamp_helpers() -> None:
    assert to_stamp_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
    with pytest.raises(ValueError, match="naive"):
        to_stamp_us(datetime(2024, 1, 1))
    assert abs(now_us() - to_stamp_us(datetime.now(UTC))) < 5_000_000


def test_known_values_and_naive_means_utc() -> None:
    assert iso_us(1_795_538_464_125_302) == "2026-11-24T16:41:04.125302Z"
    assert parse_time_us("2026-11-24T16:41:04.125302") == 1_795_538_464_125_302
    assert parse_time_us("2026-11-24T17:41:04.125302+01:00") == 1_795_538_464_125_302


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-01T00:00:00Z", "12:00"])
def test_garbage_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_time_us(bad)
