"""The JSON page reader: what pypi_simple's models read from a well-formed page, for any
page either checked facts or InvalidPage, and the wheel-name check packaging's rules give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from hypothesis import example, given, settings
from hypothesis import strategies as st
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from pypi_simple import ProjectPage, UnparsableFilenameError, parse_filename

from pypicache.digests import is_sha256
from pypicache.ops.metrics import Metrics
from pypicache.upstream.entries import (
    TEXT_LIMIT,
    InvalidPage,
    checked_page,
    filename_problem,
    sdist_project,
    wheel_project,
)
from pypicache.upstream.entrymemo import MEMO_MIN_FILES, EntryMemo
from pypicache.upstream.jsonpage import (
    STATUSES,
    absolute_url,
    dist_version,
    read_json_page,
    upload_time,
)
from pypicache.upstream.typedpage import decode, read_typed_page

NAME = "demo-pkg"
BASE = "https://up.example/simple/demo-pkg/"

# -- wheel names -------------------------------------------------------------------------------

wheel_names = st.sampled_from(["demo_pkg", "Demo.Pkg", "demo__pkg", "_", "x", "ñame", ""])
wheel_versions = st.sampled_from(["1.0", "1!2.0+local.7", "v1.0rc1", "1..0", "x", "", " 1.0"])
build_tags = st.sampled_from(["", "-1", "-12abc", "-a1", "-1\n", "-"])
tag_parts = st.sampled_from(["py3", "cp311", "py2.py3", "none", "any", "", "3x", "a..b", "a.b"])
wheel_filenames = st.builds(
    lambda name, version, build, tags: f"{name}-{version}{build}-{'-'.join(tags)}.whl",
    wheel_names,
    wheel_versions,
    build_tags,
    st.lists(tag_parts, min_size=1, max_size=4),
)


def packaging_project(filename: str) -> str | None:
    """The project packaging reads from a wheel's or an sdist's name; None: not valid."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        return parse_sdist_filename(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


@given(wheel_filenames | st.text(alphabet="ab-_.1\n.whl", max_size=30).map(lambda t: t + ".whl"))
@example("demo_pkg-1.0-py3-none-any.whl")
@example("demo_pkg-1.0-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
def test_a_wheel_name_is_valid_exactly_when_packaging_says(filename: str):
    assert wheel_project(filename) == packaging_project(filename)


sdist_filenames = st.builds(
    lambda name, version, suffix: f"{name}-{version}{suffix}",
    wheel_names | st.sampled_from(["demo-pkg", "a-b-c", "-", "demo pkg"]),
    wheel_versions | st.sampled_from(["1.0-1", "2024.1.1.post3"]),
    st.sampled_from([".tar.gz", ".zip", ".tar.bz2", ".tgz", ""]),
)


@given(sdist_filenames | st.text(alphabet="ab-_.1\n", max_size=30).map(lambda t: t + ".tar.gz"))
@example("demo_pkg-1.0.tar.gz")
@example("demo-pkg-1.0.zip")
def test_an_sdist_name_is_valid_exactly_when_packaging_says(filename: str):
    assert sdist_project(filename) == packaging_project(filename)


def pypi_simple_version(filename: str, project: str) -> str | None:
    try:
        return parse_filename(filename, project)[1]
    except UnparsableFilenameError:
        return None


# Names that read another way than at the last dash, or only with the hint: legacy
# formats, built distributions, local versions naming a platform, a Kelvin sign (whose
# lower case is "k").
distribution_names = st.builds(
    lambda name, version, suffix: f"{name}-{version}{suffix}",
    st.sampled_from(["kit-pkg", "Kit_Pkg", "kit.pkg", "\u212ait-pkg", "kit", "kit-pkg-kit"]),
    st.sampled_from(["1.0", "1!2.0.post1", "1.0-1", "1.0+local.win", "1.0+x.linux", "1.0_rc1"]),
    st.sampled_from([".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg", "-py3.8.egg"])
    | st.sampled_from([".linux-x86_64.tar.gz", ".win32.zip", ".macosx-10.9.tar.gz"]),
)


@given(distribution_names)
@example("kit_pkg-1.0.tar.gz")
@example("kit-pkg-1.0+local.win.zip")
def test_a_distribution_version_is_what_pypi_simple_reads(filename: str):
    project = "kit-pkg"
    if filename_problem(filename, project) is None:
        assert dist_version(filename, project) == pypi_simple_version(filename, project)


def test_a_compressed_tag_set_is_checked_without_expanding_it():
    parts = ".".join(f"t{i}" for i in range(40))
    filename = f"demo_pkg-1.0-{parts}-{parts}-{parts}.whl"  # 64,000 tags, were it expanded
    assert filename_problem(filename, NAME) is None


# -- URLs --------------------------------------------------------------------------------------


@given(
    st.sampled_from(["", "http://", "https://", "HTTPS://", "https:", "//"]).flatmap(
        lambda p: st.text(alphabet="ab/.:?#%; \\\t\n", max_size=25).map(lambda t: p + t)
    )
)
@example("https://files.example/packages/ab/cd/demo_pkg-1.0-py3-none-any.whl")
@example("https://files.example/x/../y")
@example("https://:/;")
def test_a_url_is_joined_as_urljoin_joins_it(url: str):
    assert absolute_url(BASE, url) == urljoin(BASE, url)


# -- upload times -----------------------------------------------------------------------------


def _reference_upload_time(value: str) -> datetime | None:
    """An ISO 8601 time as naive UTC, read by the standard library the plain way."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


iso_pieces = st.sampled_from(
    [
        *["2024", "-", "01", "W01", "-1", "T", " ", "12", ":", "30", "00", ".", "123456", ",5"],
        *["Z", "+01:00", "-05", "+00:00:01.5", "z", "\n", "1", "x", ""],
    ]
)
upload_time_texts = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(
        lambda t: t.isoformat(timespec="microseconds")
    ),
    st.datetimes().map(lambda t: t.isoformat() + "Z"),
    st.lists(iso_pieces, max_size=14).map("".join),
    st.text(max_size=30),
)


@given(upload_time_texts)
@example("2020-01-01Z")
@example("2020-W01-1Z")
@example("2020-01-01T10Z")
@example("2020-01-01T00:00:00+01:00Z")
@example("2014-01-06T10:10:00.000000Z")
@example("2014-01-06T10:10:00.5Z")
@example("2014-01-06T10:10:00+05:00")
def test_an_upload_time_is_what_the_standard_reading_gives_in_utc(text: str):
    assert upload_time(text) == _reference_upload_time(text)


# -- well-formed pages: what pypi_simple reads -------------------------------------------------

hexdigests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
sdist_names = st.builds(
    lambda name, version, suffix: f"{name}-{version}{suffix}",
    st.sampled_from(["demo-pkg", "Demo_Pkg", "demo.pkg", "other"]),
    st.sampled_from(["1.0", "2.0.dev1", "1.0-1", "x~1"]),
    st.sampled_from([".tar.gz", ".zip", ".egg", ".tar.bz2", ".exe"]),
)
filenames = wheel_filenames | sdist_names | st.text(max_size=20)
urls = st.sampled_from(
    [
        "https://files.example/packages/ab/demo_pkg-1.0-py3-none-any.whl",
        "../../packages/demo-pkg-1.0.tar.gz#sha256=00",
        "/files/x.whl",
        "https://files.example/a/../b?q=1",
    ]
)
upload_times = st.datetimes().map(lambda t: t.isoformat(timespec="microseconds") + "Z")
optional = st.none()


@st.composite
def file_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": draw(filenames),
        "url": draw(urls),
        "hashes": draw(st.dictionaries(st.sampled_from(["sha256", "md5"]), hexdigests | st.text())),
    }
    maybe = {
        "requires-python": optional | st.text(max_size=12),
        "core-metadata": optional | st.booleans() | st.fixed_dictionaries({"sha256": hexdigests}),
        "yanked": st.booleans() | st.text(max_size=12),
        "size": optional | st.integers(min_value=0, max_value=2**60),
        "upload-time": optional | upload_times,
        "provenance": optional
        | st.sampled_from(
            [
                "https://up.example/integrity/demo-pkg/1.0/demo_pkg-1.0.tar.gz/provenance",
                "http://up.example:8080/p/x",
            ]
        ),
    }
    for key, values in maybe.items():
        if draw(st.booleans()):
            entry[key] = draw(values)
    return entry


statuses = st.none() | st.fixed_dictionaries(
    {"status": st.sampled_from(sorted(STATUSES)), "reason": optional | st.text(max_size=20)}
)


@st.composite
def pages(draw: st.DrawFn) -> dict[str, Any]:
    page: dict[str, Any] = {
        "meta": {"api-version": draw(st.sampled_from(["1.0", "1.1", "1.4"]))},
        "name": draw(st.sampled_from([NAME, "Demo_Pkg", "demo.pkg"])),
        "files": draw(st.lists(file_entries(), max_size=6)),
    }
    if draw(st.booleans()):
        page["meta"]["_last-serial"] = draw(st.integers(min_value=-5, max_value=2**70))
    if draw(st.booleans()):
        page["versions"] = draw(st.lists(st.text(max_size=8), max_size=4))
    status = draw(statuses)
    if status is not None:
        page["project-status"] = status
    return page


@given(pages())
def test_a_well_formed_page_reads_as_pypi_simple_reads_it(page: dict[str, Any]):
    ours = read_json_page(NAME, page, BASE)
    theirs = checked_page(NAME, ProjectPage.from_json_data(page, BASE), None, None)
    assert ours.files == theirs.files
    assert sorted(ours.versions) == sorted(theirs.versions)
    assert (ours.serial, ours.status, ours.status_reason) == (
        theirs.serial,
        theirs.status,
        theirs.status_reason,
    )


def test_the_old_metadata_key_counts_where_the_new_one_is_missing():
    digest = "a" * 64
    entry = {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "x.whl", "hashes": {}}
    old = {**entry, "data-dist-info-metadata": {"sha256": digest}}
    both = {**old, "core-metadata": False}
    page = {"meta": {"api-version": "1.1"}, "name": NAME}
    (read,) = read_json_page(NAME, {**page, "files": [old]}, BASE).files
    assert (read.has_metadata, read.metadata_sha256) == (True, digest)
    (read,) = read_json_page(NAME, {**page, "files": [both]}, BASE).files
    assert (read.has_metadata, read.metadata_sha256) == (False, None)


# -- any page: checked facts or InvalidPage ----------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@st.composite
def damaged_pages(draw: st.DrawFn) -> object:
    """A well-formed page with one value, anywhere in it, replaced by any JSON value."""
    page = draw(pages())
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            paths.append((node, key))
            if isinstance(value, dict | list):
                walk(value)

    walk(page)
    if paths and draw(st.booleans()):
        node, key = draw(st.sampled_from(paths))
        node[key] = draw(json_values)
    elif draw(st.booleans()):
        return draw(json_values)
    return page


@given(damaged_pages())
@example({"meta": {"api-version": "2.0"}, "name": NAME, "files": []})
@example({"meta": {"api-version": "1.0"}, "name": NAME, "files": [None]})
@example(
    {"meta": {"api-version": "1.0"}, "name": NAME, "files": [], "project-status": {"status": []}}
)
def test_any_json_is_a_page_of_checked_facts_or_an_invalid_page(data: object):
    data = json.loads(json.dumps(data))  # only what a JSON body can hold
    try:
        page = read_json_page(NAME, data, BASE)
    except InvalidPage:
        return
    assert page.name == NAME
    for f in page.files:
        assert filename_problem(f.filename, NAME) is None
        assert f.sha256 is None or is_sha256(f.sha256)
        assert f.metadata_sha256 is None or is_sha256(f.metadata_sha256)
        assert f.size is None or (type(f.size) is int and f.size >= 0)
        for text in (f.requires_python, f.yanked_reason, f.version):
            assert text is None or (isinstance(text, str) and len(text) <= TEXT_LIMIT)
        assert isinstance(f.upstream_url, str)
        assert "#" not in f.upstream_url
    assert page.serial is None or (type(page.serial) is int and page.serial >= 0)
    assert page.status is None or page.status in STATUSES


# -- big pages read again: what the entries gave last time -------------------------------------

# Entries enough to make a page big, all of them valid and distinct.
FILLER = [
    {
        "filename": f"demo_pkg-0.{i}-py3-none-any.whl",
        "url": f"https://files.example/demo_pkg-0.{i}-py3-none-any.whl",
        "hashes": {"sha256": f"{i:064x}"},
        "size": i,
    }
    for i in range(MEMO_MIN_FILES)
]


def big(page: dict[str, Any], extra: list[Any]) -> dict[str, Any]:
    return {**page, "files": [*extra, *FILLER]}


def read_or_problem(page: object, memo: EntryMemo, *, typed: bool = False) -> object:
    """What reading ``page`` gives, entries left out (by reason) included; ``typed``: read
    as a body is, typed where it decodes so."""
    metrics = Metrics()
    decoded = decode(json.dumps(page).encode()) if typed else None
    try:
        read = (
            read_typed_page(NAME, decoded, BASE, metrics=metrics, memo=memo)
            if decoded is not None
            else None
        )
        if read is None:
            read = read_json_page(NAME, page, BASE, metrics=metrics, memo=memo)
    except InvalidPage as exc:
        return f"invalid: {exc}"
    (counted,) = metrics.upstream_invalid_entries.collect()
    left_out = {s.labels["reason"]: s.value for s in counted.samples if s.name.endswith("_total")}
    return (read.files, sorted(read.versions), read.serial, read.status, left_out)


PROVENANCES = ["https://up.example/integrity/demo-pkg/1.0/a/provenance", "../p", "not a url"]


@st.composite
def valid_entries(draw: st.DrawFn) -> dict[str, Any]:
    """Entries taken whole (or with a provenance left out), as most of a real page's are."""
    entry = draw(file_entries())
    entry["filename"] = draw(st.sampled_from(["demo_pkg-1.0-py3-none-any.whl", "demo-pkg-1.0.zip"]))
    entry["hashes"] = {"sha256": draw(hexdigests)}
    entry["provenance"] = draw(st.none() | st.sampled_from(PROVENANCES))
    return entry


# What each key of an entry may say instead, in the JSON types that compare equal to
# each other (1 == 1.0 == True) too.
same_numbers = st.sampled_from([0, 1, 1.0, True, False])
NEW_VALUES = {
    "filename": st.sampled_from(["demo_pkg-1.0-py3-none-any.whl", "demo-pkg-3.tar.gz"]),
    "url": urls,
    "hashes": st.fixed_dictionaries({"sha256": hexdigests}),
    "requires-python": st.text(max_size=12),
    "core-metadata": st.booleans() | same_numbers | st.fixed_dictionaries({"sha256": hexdigests}),
    "data-dist-info-metadata": st.booleans() | st.fixed_dictionaries({"sha256": hexdigests}),
    "yanked": same_numbers | st.text(max_size=12),
    "size": same_numbers | st.integers(min_value=0, max_value=2**60),
    "upload-time": upload_times,
    "provenance": st.sampled_from(PROVENANCES),
}


@st.composite
def pages_read_twice(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A page, and the page again with one value of one of its entries changed."""
    page = draw(pages())
    taken = draw(st.lists(valid_entries(), min_size=1, max_size=4))
    for number, entry in enumerate(taken):  # each name once: none is left out as a repeat
        wheel = entry["filename"].endswith(".whl")
        entry["filename"] = (
            f"demo_pkg-{number}.0-py3-none-any.whl" if wheel else f"demo-pkg-{number}.0.zip"
        )
    page["files"] += taken
    valid = len(taken)
    page = json.loads(json.dumps(page))
    again = [dict(entry) for entry in page["files"]]
    # One value of an entry taken last time: a change there is what a memo could miss.
    entry = again[draw(st.integers(min_value=len(again) - valid, max_value=len(again) - 1))]
    key = draw(st.sampled_from(sorted(NEW_VALUES)))
    entry[key] = draw(st.one_of(NEW_VALUES[key], NEW_VALUES[key], json_values))
    return page, json.loads(json.dumps({**page, "files": again}))


@settings(max_examples=200, deadline=None)
@given(pages_read_twice(), st.booleans(), st.booleans())
def test_a_big_page_read_again_reads_as_it_reads_afresh(
    pages: tuple[dict[str, Any], dict[str, Any]], typed_before: bool, typed_after: bool
):
    before, after = (big(page, page["files"]) for page in pages)
    memo = EntryMemo()
    read_or_problem(before, memo, typed=typed_before)
    assert read_or_problem(after, memo, typed=typed_after) == read_or_problem(after, EntryMemo())


# -- typed: the pages indexes send, decoded into the simple API's types ---------------------


@given(pages())
def test_the_pages_indexes_send_are_read_typed(page: dict[str, Any]):
    decoded = decode(json.dumps(page).encode())
    assert decoded is not None
    assert read_typed_page(NAME, decoded, BASE, memo=EntryMemo()) is not None


@given(damaged_pages())
@example({"meta": {"api-version": "1.0"}, "name": NAME, "files": [], "project-status": None})
@example({"meta": {"api-version": "1.0", "_last-serial": "12"}, "name": NAME, "files": []})
def test_a_page_read_typed_reads_as_it_reads_plain(data: object):
    data = json.loads(json.dumps(data))
    assert read_or_problem(data, EntryMemo(), typed=True) == read_or_problem(data, EntryMemo())


@given(st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()))
@example(b'{"meta": {"api-version": "1.0"}, "name": 1, "files": [], "name": "demo-pkg"}')
@example(b'{"s": "\\ud800"}')
@example(b"\xef\xbb\xbf{}")
def test_a_body_decodes_typed_only_as_the_json_it_is(body: bytes):
    """Duplicate keys, surrogates, a byte-order mark: typed or not, as json.loads reads it."""
    typed = decode(body)
    if typed is None:
        return
    plain = json.loads(body)
    assert typed.name == plain["name"]
    assert len(typed.files) == len(plain["files"])


def test_values_that_compare_equal_across_json_types_are_not_taken_for_each_other():
    entry = {"filename": "demo_pkg-1.0-py3-none-any.whl", "url": "x.whl", "hashes": {}}
    page = {"meta": {"api-version": "1.1"}, "name": NAME}
    memo = EntryMemo()
    for key in ("size", "yanked", "core-metadata"):
        for value in (1, 1.0, True, 1):
            varied = big(page, [{**entry, key: value}])
            for typed in (False, True):
                assert read_or_problem(varied, memo, typed=typed) == read_or_problem(
                    varied, EntryMemo()
                )


def test_remembered_entries_stay_within_their_bound():
    memo = EntryMemo(max_entries=2 * MEMO_MIN_FILES + 10)
    page = {"meta": {"api-version": "1.1"}, "name": NAME}
    for number in range(3):
        read_json_page(NAME, page | {"files": FILLER}, f"{BASE}{number}/", memo=memo)
        assert len(memo) <= memo.max_entries
    assert len(memo) == 2 * MEMO_MIN_FILES  # the least recently read page went
