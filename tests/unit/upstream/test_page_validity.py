"""What makes an upstream 200 a usable project page: bounded inflating, parsing, validity."""

from __future__ import annotations

import contextlib
import json
import sys
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name

from pypicache.filefacts import FileFacts
from pypicache.upstream.client import CHUNK, decoded
from pypicache.upstream.entries import InvalidPage, UpstreamPage, page_problem
from pypicache.upstream.pages import parse_page

NAME = "demo-pkg"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def upstream_file(filename: str) -> FileFacts:
    return FileFacts(
        filename=filename,
        version=None,
        sha256=None,
        size=None,
        requires_python=None,
        yanked=False,
        yanked_reason=None,
        upload_time=None,
        has_metadata=False,
        metadata_sha256=None,
        upstream_url=f"https://files.example/{filename}",
        provenance=None,
    )


def page(filenames: list[str], serial: int | None, status: str | None = None) -> UpstreamPage:
    files = tuple(upstream_file(f) for f in filenames)
    return UpstreamPage(NAME, files, (), serial, None, status, None)


versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)
dists = versions.map(lambda v: f"demo_pkg-{v}-py3-none-any.whl") | versions.map(
    lambda v: f"demo-pkg-{v}.tar.gz"
)
filenames = st.text(min_size=1, max_size=40) | dists
serials = st.none() | st.integers(min_value=0, max_value=10**9)


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- page_problem ------------------------------------------------------------------------------


@given(st.lists(filenames), serials)
def test_nothing_stored_means_any_page_is_taken(files, serial):
    assert page_problem(NAME, page(files, serial), [], None) is None


@given(st.lists(filenames, min_size=1), serials, st.lists(dists, min_size=1), st.integers(0))
def test_a_page_with_a_serial_and_a_distribution_of_the_project_is_valid(
    stored, stored_serial, listed, serial
):
    assert page_problem(NAME, page(listed, serial), stored, stored_serial) is None


@given(st.lists(filenames, min_size=1), serials, st.none() | st.integers(0))
def test_a_page_without_files_never_replaces_stored_files(stored, stored_serial, serial):
    assert page_problem(NAME, page([], serial), stored, stored_serial) is not None


@given(st.lists(filenames, min_size=1), st.integers(0))
def test_a_quarantined_project_may_list_no_files(stored, serial):
    assert page_problem(NAME, page([], serial, "quarantined"), stored, serial) is None


@given(st.lists(filenames), st.lists(filenames), st.integers(0))
def test_a_page_without_a_serial_never_replaces_one_with(stored, listed, stored_serial):
    assert page_problem(NAME, page(listed, None), stored, stored_serial) is not None


@given(st.lists(dists, min_size=1), st.lists(st.text(max_size=20), min_size=1), st.integers(0))
def test_links_that_are_no_distribution_of_the_project_never_replace_its_files(
    stored, links, serial
):
    links = [f"{link}.html" for link in links]  # a portal's links: no wheel, no sdist
    assert page_problem(NAME, page(links, serial), stored, serial) is not None


# -- decoded: inflating in bounded steps ---------------------------------------------------------


@given(st.binary(max_size=300_000), st.lists(st.integers(0, 300_000), max_size=8))
def test_gzip_round_trips_in_chunks_no_bigger_than_chunk(data, cuts):
    out = list(decoded(split(gzip(data), cuts), "gzip"))
    assert b"".join(out) == data
    assert all(0 < len(chunk) <= CHUNK for chunk in out)


@given(st.binary(max_size=10_000), st.lists(st.integers(0, 10_000), max_size=4))
def test_identity_passes_the_bytes_through(data, cuts):
    assert b"".join(decoded(split(data, cuts), "identity")) == data


@given(st.binary(max_size=5_000), st.sampled_from(["gzip", "deflate", "x-gzip, gzip"]))
def test_garbage_compressed_data_is_an_invalid_page_and_nothing_else(data, coding):
    with contextlib.suppress(InvalidPage):
        b"".join(decoded([data], coding))


def test_a_bomb_is_inflated_only_as_far_as_it_is_read():
    bomb = gzip(bytes(64 * CHUNK))  # a few hundred bytes
    first = next(decoded([bomb], "gzip"))
    assert len(first) == CHUNK


def test_an_unknown_coding_is_refused():
    with pytest.raises(InvalidPage, match="unsupported Content-Encoding"):
        decoded([b"x"], "br")


def test_a_truncated_stream_is_refused():
    with pytest.raises(InvalidPage, match="ends early"):
        b"".join(decoded([gzip(b"x" * 1000)[:-10]], "gzip"))


# -- parse_page -------------------------------------------------------------------------------


@given(
    st.binary(max_size=2_000),
    st.sampled_from([JSON_TYPE, "text/html", "text/html; charset=latin-1", "text/plain", None]),
)
def test_any_body_parses_into_the_projects_page_or_is_an_invalid_page(body, content_type):
    try:
        parsed = parse_page(NAME, body, content_type, "https://up.example/simple/demo-pkg/")
    except InvalidPage:
        return
    assert parsed.name == NAME


@given(st.text(min_size=1, max_size=30) | st.sampled_from(["Demo_Pkg", "demo.pkg", "DEMO-pkg"]))
def test_a_json_page_naming_another_project_is_refused(other):
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": other, "files": []}).encode()
    try:
        parsed = parse_page(NAME, body, JSON_TYPE, "https://up.example/simple/")
    except InvalidPage:
        assert canonicalize_name(other) != NAME
        return
    assert canonicalize_name(other) == parsed.name == NAME


@pytest.mark.parametrize("yanked", [False, 1], ids=["typed", "plain"])
def test_a_json_page_is_read_without_pypi_simple(monkeypatch: pytest.MonkeyPatch, yanked):
    """pypi_simple's import loads its HTML and JSON parsers (16 MB): JSON upstreams never do."""
    files = ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz", "demo-pkg-2.0.zip"]
    entries = [{"filename": f, "url": f"/f/{f}", "hashes": {}, "yanked": yanked} for f in files]
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": NAME, "files": entries}).encode()
    monkeypatch.setitem(sys.modules, "pypi_simple", None)  # what an absent package looks like
    parsed = parse_page(NAME, body, JSON_TYPE, "https://up.example/simple/demo-pkg/")
    assert [(f.filename, f.version) for f in parsed.files] == [
        (files[0], "1.0"),
        (files[1], "1.0"),
        (files[2], "2.0"),
    ]


def test_html_without_links_or_the_simple_api_meta_is_not_a_page():
    portal = b"<html><head><title>Hotel Wi-Fi</title></head><body>Accept our terms</body></html>"
    with pytest.raises(InvalidPage, match="not a page"):
        parse_page(NAME, portal, "text/html", "https://up.example/simple/demo-pkg/")


def test_an_empty_simple_api_page_is_a_page():
    empty = b'<html><head><meta name="pypi:repository-version" content="1.1"></head></html>'
    assert parse_page(NAME, empty, "text/html", "https://up.example/").files == ()


def test_an_old_style_page_with_links_and_no_meta_is_a_page():
    html = b'<html><body><a href="demo_pkg-1.0-py3-none-any.whl">demo_pkg-1.0-py3-none-any.whl</a>'
    parsed = parse_page(NAME, html, "text/html", "https://up.example/simple/demo-pkg/")
    assert [f.filename for f in parsed.files] == ["demo_pkg-1.0-py3-none-any.whl"]
