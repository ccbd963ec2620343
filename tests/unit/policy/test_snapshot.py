"""Snapshots: the time a snapshot URL names, and a page left to the files uploaded by then."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from pypicache.cache.index import CachedPage
from pypicache.cache.rendering import PageData, RenderedPage
from pypicache.errors import NotInSnapshot
from pypicache.filefacts import FileFacts
from pypicache.policy.snapshot import Snapshots, as_of, parse_snapshot_time
from pypicache.times import BadTime

# Offsets RFC 3339 can spell: whole minutes, less than a day either way.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Moments every offset can spell without leaving the years 0001-9999.
moments = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31))


def spelled(moment: datetime, offset: timezone, separator: str, digits: int, zulu: str) -> str:
    """``moment`` (naive UTC) the way a URL may spell it: in ``offset`` (``zulu`` for
    UTC: Z or z), ``separator`` between date and time, ``digits`` of fraction."""
    local = moment.replace(tzinfo=UTC).astimezone(offset)
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{separator}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    )
    if digits:
        text += "." + f"{local.microsecond:06d}000"[:digits]
    minutes = int(offset.utcoffset(None).total_seconds()) // 60
    if minutes == 0:
        return text + zulu
    sign = "+" if minutes > 0 else "-"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@given(
    moments,
    offsets,
    st.sampled_from(["T", "t", " "]),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
)
def test_every_spelling_of_a_moment_is_that_moment_in_utc(
    moment: datetime, offset: timezone, separator: str, digits: int, zulu: str
):
    """So equal moments share one cached snapshot, however the URL spells them."""
    exact = moment.replace(microsecond=int(f"{moment.microsecond:06d}"[:digits].ljust(6, "0")))
    assert parse_snapshot_time(spelled(moment, offset, separator, digits, zulu)) == exact


@given(st.text(max_size=60))
def test_any_path_segment_is_a_naive_utc_moment_or_a_one_line_reason_naming_it(text: str):
    try:
        moment = parse_snapshot_time(text)
    except BadTime as exc:
        reason = str(exc)
        assert reason.startswith(f"snapshot time {text.strip()!r:.40}")
        assert "\n" not in reason
        assert "\r" not in reason
        assert len(reason) < 200
        return
    assert moment.tzinfo is None


@pytest.mark.parametrize(
    "text", ["yesterday", "2026-12-01", "2026-12-01T00:00:00", "2026-02-30T00:00:00Z", "0" * 500]
)
def test_a_time_that_is_none_is_refused(text: str):
    with pytest.raises(BadTime, match=r"^snapshot time "):
        parse_snapshot_time(text)


def facts(filename: str, version: str, uploaded: datetime | None) -> FileFacts:
    return FileFacts(
        filename, version, "0" * 64, 1, None, False, None, uploaded, False, None, "https://x/", None
    )


T0 = datetime(2026, 1, 1)


def entry(*files: FileFacts) -> CachedPage:
    versions = sorted({f.version for f in files if f.version})
    page = RenderedPage(PageData("lib", "lib", 7, versions, files))
    return CachedPage(page, fresh_until=time.monotonic() + 600, stale=False)


def test_a_page_is_left_to_the_files_uploaded_at_or_before_the_moment():
    old = facts("lib-1.0.tar.gz", "1.0", T0)
    wheel = facts("lib-1.0-py3-none-any.whl", "1.0", T0 + timedelta(days=2))
    new = facts("lib-2.0.tar.gz", "2.0", T0 + timedelta(days=2))
    unknown = facts("lib-0.9.tar.gz", "0.9", None)
    live = entry(old, wheel, new, unknown)
    shown = as_of(live.page, T0 + timedelta(days=1))
    assert shown is not None
    assert list(shown.files) == [old.filename]
    assert list(shown.data.versions) == ["1.0"], "2.0 and 0.9 lost all their files"
    assert as_of(live.page, T0 + timedelta(days=2)).files.keys() == {
        old.filename,
        wheel.filename,
        new.filename,
    }, "at the moment itself counts; no upload time never does"


def test_snapshots_are_kept_per_moment_and_made_anew_from_a_new_live_page():
    snapshots = Snapshots(cache_bytes=1 << 20)
    old = facts("lib-1.0.tar.gz", "1.0", T0)
    live = entry(old, facts("lib-2.0.tar.gz", "2.0", T0 + timedelta(hours=2)))
    at = T0 + timedelta(hours=1)
    first = snapshots.page("main", "lib", live, at)
    assert list(first.page.files) == [old.filename]
    assert snapshots.page("main", "lib", live, at) is first, "kept"
    assert snapshots.page("other", "lib", live, at) is not first, "one per index"
    assert snapshots.page("main", "lib", live, T0 + timedelta(hours=3)) is live, "all of it"
    yanked = entry(replace(old, yanked=True))
    assert snapshots.page("main", "lib", yanked, at).page.files[old.filename].yanked


def test_a_moment_to_come_is_todays_page_kept_by_clients_no_longer_than_until_then():
    snapshots = Snapshots(cache_bytes=1 << 20)
    live = entry(facts("lib-1.0.tar.gz", "1.0", T0))
    soon = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=30)
    shown = snapshots.page("main", "lib", live, soon)
    assert shown.page is live.page
    assert shown.until is not None
    assert shown.until <= time.time() + 31
    snapshots.admit(facts("lib-9.0.tar.gz", "9.0", soon), soon)


def test_a_file_uploaded_later_is_refused_with_one_line_naming_both_times():
    snapshots = Snapshots(cache_bytes=1 << 20)
    later = facts("lib-2.0.tar.gz", "2.0", T0 + timedelta(days=1, microseconds=5))
    with pytest.raises(NotInSnapshot) as refused:
        snapshots.admit(later, T0)
    assert str(refused.value) == (
        "lib-2.0.tar.gz was uploaded 2026-01-02T00:00:00Z, after the snapshot's time "
        "2026-01-01T00:00:00Z"
    )
    with pytest.raises(NotInSnapshot, match="has no known upload time"):
        snapshots.admit(facts("lib-0.9.tar.gz", "0.9", None), T0)
    snapshots.admit(facts("lib-1.0.tar.gz", "1.0", T0), T0)
