"""Durations and RFC 3339 moments: what settings, rules and snapshot URLs are read from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.times import (
    MAX_DURATION,
    BadTime,
    format_duration,
    format_moment,
    parse_duration,
    parse_moment,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("7d", 7 * 86400),
        ("36h", 36 * 3600),
        ("90m", 5400),
        ("1d12h", 36 * 3600),
        ("2w", 14 * 86400),
        ("P7D", 7 * 86400),
        ("PT36H", 36 * 3600),
        ("P1DT2H30M", 95400),
        ("p1w", 7 * 86400),
    ],
)
def test_durations_people_write_are_read(text: str, seconds: int):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "7", "7 days", "-1d", "1.5d", "d", "7d-", "3650001d", "∞"]
)
def test_anything_else_is_refused_with_what_was_expected(text: str):
    with pytest.raises(BadTime, match=r"duration|longer than"):
        parse_duration(text)


@given(st.text(max_size=30))
def test_any_text_is_a_duration_within_bounds_or_refused(text: str):
    try:
        duration = parse_duration(text)
    except BadTime:
        return
    assert timedelta(0) <= duration <= MAX_DURATION


@given(st.timedeltas(min_value=timedelta(0), max_value=MAX_DURATION))
def test_a_duration_reads_back_as_written(duration: timedelta):
    whole = timedelta(seconds=int(duration.total_seconds()))
    assert parse_duration(format_duration(whole)) == whole


def test_moments_are_read_in_utc_whatever_their_offset():
    assert parse_moment("2026-12-01T00:00:00Z") == datetime(2026, 12, 1)
    assert parse_moment("2026-12-01T01:30:00+01:30") == datetime(2026, 12, 1)
    assert parse_moment("2026-12-01t00:00:00.25z") == datetime(2026, 12, 1, 0, 0, 0, 250000)


@pytest.mark.parametrize(
    "text", ["2026-12-01", "2026-12-01T00:00:00", "2026-13-01T00:00:00Z", "now", "1e9", ""]
)
def test_a_moment_without_its_offset_or_that_never_was_is_refused(text: str):
    with pytest.raises(BadTime):
        parse_moment(text)


@given(st.text(max_size=40))
def test_any_text_is_a_naive_utc_moment_or_refused(text: str):
    try:
        moment = parse_moment(text)
    except BadTime:
        return
    assert moment.tzinfo is None


@given(st.datetimes(timezones=st.just(UTC)))
def test_a_moment_reads_back_as_written_to_the_second(moment: datetime):
    naive = moment.replace(tzinfo=None, microsecond=0)
    assert parse_moment(format_moment(naive)) == naive
