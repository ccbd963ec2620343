from __future__ import annotations

import gc
import gzip
import hashlib
import json
import tracemalloc
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypicache.cache.rendering import (
    GZIP_MIN_BYTES,
    KEEP_PLAIN_BELOW,
    SEND_PIECE,
    PageData,
    Representation,
    etag_of,
    render,
)
from pypicache.filefacts import FileFacts


def record(filename: str, **changes) -> FileFacts:
    values = {
        "filename": filename,
        "version": "1.0",
        "sha256": "a" * 64,
        "size": 10,
        "requires_python": None,
        "yanked": False,
        "yanked_reason": None,
        "upload_time": datetime(2024, 1, 2, 3, 4, 5),
        "has_metadata": False,
        "metadata_sha256": None,
        "upstream_url": None,
        "provenance": None,
    }
    values.update(changes)
    return FileFacts(**values)


def test_rendering_is_deterministic_whatever_the_order_of_files():
    files = [record("pkg-1.0.tar.gz"), record("pkg-1.0-py3-none-any.whl")]
    one = render(PageData("pkg", "Pkg", 7, ["1.0"], files))
    other = render(PageData("pkg", "Pkg", 7, ["1.0"], list(reversed(files))))
    assert one.html == other.html
    assert one.json == other.json


def test_filenames_are_percent_encoded_in_urls_and_escaped_in_text():
    page = render(PageData("pkg", "Pkg", None, ["1.0+local"], [record("pkg-1.0+local.tar.gz")]))
    assert b'href="../../packages/pkg/pkg-1.0%2Blocal.tar.gz#sha256=' in page.html.body
    assert b">pkg-1.0+local.tar.gz</a>" in page.html.body
    assert b"<!--SERIAL" not in page.html.body


def test_unknown_size_claims_api_1_0_and_omits_size():
    page = render(PageData("pkg", "Pkg", 3, [], [record("pkg-1.0.tar.gz", size=None)]))
    data = json.loads(page.json.body)
    assert data["meta"] == {"api-version": "1.0", "_last-serial": 3}
    assert "size" not in data["files"][0]
    assert data["versions"] == []


def test_upload_time_keeps_microseconds_only_when_present():
    page = render(
        PageData(
            "pkg",
            "Pkg",
            None,
            ["1.0"],
            [
                record("a.tar.gz", upload_time=datetime(2024, 1, 2, 3, 4, 5, 6)),
                record("b.tar.gz", upload_time=None),
            ],
        )
    )
    files = json.loads(page.json.body)["files"]
    assert files[0]["upload-time"] == "2024-01-02T03:04:05.000006Z"
    assert "upload-time" not in files[1]


def test_versions_sort_by_version_then_text():
    page = render(PageData("pkg", "Pkg", None, ["10.0", "2.0", "1.0.0", "1.0", "weird"], []))
    assert json.loads(page.json.body)["versions"] == ["1.0", "1.0.0", "2.0", "10.0", "weird"]


# -- escaping: no value the upstream sends ever becomes markup ---------------------------------

HOSTILE = "\"><script>window.pwned=1</script><img src=x onerror=alert(1)>'&amp;"


class Parsed(HTMLParser):
    """Every start tag with its attributes, and the text inside each element, as parsed."""

    def __init__(self, body: bytes) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, str] = {}
        self.anchor_texts: list[str] = []
        self._open: list[str] = []
        self.feed(body.decode())
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "a":
            self.anchor_texts.append("")
        if tag not in ("meta", "br"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if not self._open:
            return
        tag = self._open[-1]
        self.texts[tag] = self.texts.get(tag, "") + data
        if tag == "a":
            self.anchor_texts[-1] += data

    def anchors(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == "a"]


def expected_attributes(f: FileFacts) -> dict[str, str | None]:
    """What a client must read from the anchor of ``f``: exactly the values we hold."""
    attrs: dict[str, str | None] = {
        "href": f"../../packages/{quote('pkg', safe='')}/{quote(f.filename, safe='')}"
        + (f"#sha256={f.sha256}" if f.sha256 else "")
    }
    if f.requires_python:
        attrs["data-requires-python"] = f.requires_python
    if f.yanked:
        attrs["data-yanked"] = f.yanked_reason or ""
    if f.has_metadata:
        value = f"sha256={f.metadata_sha256}" if f.metadata_sha256 else "true"
        attrs["data-dist-info-metadata"] = value
        attrs["data-core-metadata"] = value
    return attrs


# Any text a JSON page can carry and UTF-8 can encode (a lone surrogate cannot be sent).
TEXT = st.text(st.characters(exclude_categories=("Cs",)))
HOSTILE_TEXT = st.one_of(
    TEXT, st.sampled_from([HOSTILE, "</a><script>x</script>", "&lt;", "../../x", "a?b#c"])
)


@st.composite
def hostile_records(draw: st.DrawFn) -> FileFacts:
    return record(
        draw(HOSTILE_TEXT),
        sha256=draw(st.none() | HOSTILE_TEXT),
        requires_python=draw(st.none() | HOSTILE_TEXT),
        yanked=draw(st.booleans()),
        yanked_reason=draw(st.none() | HOSTILE_TEXT),
        has_metadata=draw(st.booleans()),
        metadata_sha256=draw(st.none() | HOSTILE_TEXT),
        provenance=draw(st.none() | st.just("uploaded") | HOSTILE_TEXT),
    )


@given(
    display_name=HOSTILE_TEXT,
    files=st.lists(hostile_records(), max_size=4, unique_by=lambda f: f.filename),
)
@settings(max_examples=300)
def test_every_value_round_trips_through_an_html_parser_and_none_becomes_markup(
    display_name, files
):
    body = render(PageData("pkg", display_name, 7, [], files)).html.body
    parsed = Parsed(body)

    ordered = sorted(files, key=lambda f: f.filename)
    assert parsed.anchors() == [expected_attributes(f) for f in ordered]
    assert parsed.anchor_texts == [f.filename for f in ordered]
    assert {tag for tag, _ in parsed.tags} <= {
        "html",
        "head",
        "meta",
        "title",
        "body",
        "h1",
        "a",
        "br",
    }
    assert parsed.texts["title"] == parsed.texts["h1"] == f"Links for {display_name}"
    for f, attrs in zip(ordered, parsed.anchors(), strict=True):
        path = urlsplit(str(attrs["href"])).path
        assert path.split("/")[:4] == ["..", "..", "packages", "pkg"]
        assert unquote(path.split("/")[4]) == f.filename, "one segment: the file's name"
        assert len(path.split("/")) == 5


def test_markup_in_every_field_is_text_and_the_hash_cannot_close_the_attribute():
    hostile = record(
        HOSTILE,
        sha256=HOSTILE,
        requires_python=HOSTILE,
        yanked=True,
        yanked_reason=HOSTILE,
        has_metadata=True,
        metadata_sha256=HOSTILE,
    )
    body = render(PageData("pkg", HOSTILE, None, [], [hostile])).html.body
    assert b"<script" not in body
    assert b"<img" not in body
    assert b'#sha256="' not in body
    assert b'"sha256="' not in body
    assert b"#sha256=&quot;&gt;&lt;script&gt;" in body
    assert b'data-core-metadata="sha256=&quot;&gt;&lt;script&gt;' in body
    assert Parsed(body).anchors() == [expected_attributes(hostile)]


def test_ordinary_pages_are_the_same_bytes_as_before():
    """Escaping a hex digest changes nothing: pages are what they were (but for the API
    version they claim, 1.3 since provenance)."""
    page = render(
        PageData(
            "pkg",
            "Pkg",
            7,
            ["1.0"],
            [
                record(
                    "pkg-1.0.tar.gz",
                    requires_python=">=3.8",
                    yanked=True,
                    yanked_reason="broken",
                    has_metadata=True,
                    metadata_sha256="b" * 64,
                )
            ],
        )
    )
    assert (
        page.html.body
        == (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.4">\n'
            "    <title>Links for Pkg</title>\n  </head>\n  <body>\n    <h1>Links for Pkg</h1>\n"
            f'    <a href="../../packages/pkg/pkg-1.0.tar.gz#sha256={"a" * 64}" '
            'data-requires-python="&gt;=3.8" data-yanked="broken" '
            f'data-dist-info-metadata="sha256={"b" * 64}" data-core-metadata="sha256={"b" * 64}">'
            "pkg-1.0.tar.gz</a><br />\n  </body>\n</html>\n<!--SERIAL 7-->\n"
        ).encode()
    )


def expected_entry(f: FileFacts) -> dict[str, object]:
    """What a client must read from the JSON entry of ``f``: exactly the values we hold."""
    entry: dict[str, object] = {
        "filename": f.filename,
        "url": f"../../packages/{quote('pkg', safe='')}/{quote(f.filename, safe='')}",
        "hashes": {"sha256": f.sha256} if f.sha256 else {},
    }
    if f.requires_python:
        entry["requires-python"] = f.requires_python
    if f.size is not None:
        entry["size"] = f.size
    if f.upload_time is not None:
        entry["upload-time"] = f.upload_time.isoformat() + "Z"
    if f.yanked:
        entry["yanked"] = f.yanked_reason or True
    if f.has_metadata:
        value = {"sha256": f.metadata_sha256} if f.metadata_sha256 else True
        entry["core-metadata"] = entry["data-dist-info-metadata"] = value
    if f.provenance is not None:
        entry["provenance"] = f"{entry['url']}.provenance"
    return entry


@given(files=st.lists(hostile_records(), max_size=4, unique_by=lambda f: f.filename))
@settings(max_examples=300)
def test_every_value_round_trips_through_json_with_keys_sorted(files):
    body = render(PageData("pkg", "Pkg", 7, [], files)).json.body
    data = json.loads(body)
    ordered = sorted(files, key=lambda f: f.filename)
    assert data["files"] == [expected_entry(f) for f in ordered]
    # The bytes are those of a canonical dump: one page, one ETag, whoever renders it.
    assert (
        body == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


@pytest.mark.parametrize("count", [0, 1, 499, 500, 501, 1001])
def test_a_page_of_any_size_lists_each_file_once_in_order(count: int):
    """Big pages are written a few hundred files at a time; no file is lost or doubled
    where one part ends and the next begins."""
    files = [record(f"pkg-{i}.0.tar.gz", version=f"{i}.0") for i in range(count)]
    page = render(PageData("pkg", "Pkg", 7, [f.version for f in files], files))
    ordered = sorted(files, key=lambda f: f.filename)
    data = json.loads(page.json.body)
    assert data["files"] == [expected_entry(f) for f in ordered]
    assert (
        page.json.body
        == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    parsed = Parsed(page.html.body)
    assert parsed.anchors() == [expected_attributes(f) for f in ordered]
    assert page.html.body.endswith(b"  </body>\n</html>\n<!--SERIAL 7-->\n")


@pytest.mark.parametrize("size", [GZIP_MIN_BYTES, KEEP_PLAIN_BELOW, 4 * KEEP_PLAIN_BELOW])
def test_a_rendering_kept_encoded_only_still_gives_its_plain_bytes(size: int):
    plain = bytes(range(256)) * (size // 256 + 1)
    representation = Representation(plain, etag_of(plain))
    encoded = representation.gzipped()
    assert gzip.decompress(encoded.body) == plain
    assert representation.body == plain
    assert representation.length == len(plain)
    assert representation.gzipped() is encoded


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                lambda byte, n: bytes([byte]) * n, st.integers(0, 255), st.integers(0, 70_000)
            ),
            st.builds(lambda n: hashlib.sha256(str(n).encode()).digest() * 2048, st.integers()),
        ),
        max_size=12,
    )
)
def test_a_rendering_made_of_parts_is_their_bytes_however_they_are_cut(parts: list[bytes]):
    whole = b"".join(parts)
    made = Representation.made_of(parts)
    assert made.length == len(whole)
    assert made.etag == etag_of(whole)
    assert made == Representation(whole, etag_of(whole))
    pieces = list(made.pieces())
    assert b"".join(pieces) == whole
    encoded = made.gzipped()
    assert gzip.decompress(encoded.body) == whole
    # Deterministic: the same parts make the same encoded bytes, as one ETag must.
    assert Representation.made_of(parts).gzipped().body == encoded.body
    if len(whole) >= KEEP_PLAIN_BELOW:
        assert all(len(piece) <= SEND_PIECE for piece in pieces)
        assert made.gzipped() is encoded  # made encoded: kept that way


def test_a_big_page_is_sent_a_piece_at_a_time_to_a_client_without_gzip():
    files = [record(f"pkg-{i}.0.tar.gz", version=f"{i}.0") for i in range(3000)]
    page = render(PageData("pkg", "pkg", 7, [f"{i}.0" for i in range(3000)], files))
    representation = page.json
    assert representation.length >= 2 * SEND_PIECE
    pieces = list(representation.pieces())
    assert len(pieces) > 1
    assert all(len(piece) <= SEND_PIECE for piece in pieces)
    body = b"".join(pieces)
    assert len(body) == representation.length
    assert len(json.loads(body)["files"]) == 3000


@pytest.mark.parametrize("count", [30, 300, 3000, 11000])
def test_a_page_is_counted_at_about_the_memory_it_holds(count: int):
    """The page cache's bound is in bytes of this estimate: far above the truth, a real
    install set's big pages no longer fit and are read from the database again."""

    def realistic(i: int) -> FileFacts:
        name = (
            f"demo_pkg-{i // 20}.{i % 20}.0-cp3{i % 7 + 8}-cp3{i % 7 + 8}-manylinux_2_17_x86_64.whl"
        )
        digest = hashlib.sha256(name.encode()).hexdigest()
        return record(
            name,
            version=f"{i // 20}.{i % 20}.0",
            sha256=digest,
            size=1_000_000 + i,
            requires_python=">=3.8",
            upload_time=datetime(2020, 1, 1, 0, 0, i % 60, i),
            has_metadata=True,
            metadata_sha256=hashlib.sha256(digest.encode()).hexdigest(),
            upstream_url=f"https://files.example/packages/{digest[:2]}/{digest[2:4]}/{digest}/{name}",
        )

    gc.collect()
    tracemalloc.start()
    try:
        files = [realistic(i) for i in range(count)]
        page = render(
            PageData("demo-pkg", "demo-pkg", 7, sorted({f.version for f in files}), files)
        )
        del files
        page.json.gzipped()
        page.html.gzipped()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert 0.7 * held <= page.size <= 1.5 * held
