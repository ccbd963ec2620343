"""One page builder, two renderings: PEP 503 HTML and PEP 691 JSON, byte-for-byte deterministic."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

import orjson
from isal import igzip, isal_zlib
from packaging.utils import canonicalize_version
from packaging.version import InvalidVersion, Version

from pypicache.filefacts import FileFacts

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
CONTENT_TYPES = {
    JSON_TYPE: JSON_TYPE,
    HTML_TYPE: f"{HTML_TYPE}; charset=utf-8",
    TEXT_HTML: f"{TEXT_HTML}; charset=utf-8",
}
# We serve `versions`, `size` and `upload-time` (PEP 700), `provenance` (PEP 740, 1.3)
# and the project status (PEP 792, 1.4); 1.2's `tracks` (PEP 708) need not be served to
# claim a later version.
API_VERSION = "1.4"
# The URL of a file's provenance (PEP 740) is the file's with this appended.
PROVENANCE_SUFFIX = ".provenance"


def file_href(project: str, filename: str) -> str:
    """Relative to /simple/<project>/, so pages are the same bytes behind any proxy.

    Each name is one percent-encoded path segment: a ``/``, ``?`` or ``#`` in a
    filename cannot point the link anywhere but at that file.
    """
    return _href_prefix(project) + quote(filename, safe="")


@dataclass(frozen=True)
class PageData:
    name: str
    display_name: str
    serial: int | None
    versions: Sequence[str]
    files: Sequence[FileFacts]
    private: bool = False
    status: str | None = None  # PEP 792; None: nothing said (active)
    status_reason: str | None = None


# Bodies below this go out as they are: compressing saves less than a packet.
GZIP_MIN_BYTES = 1400
# ISA-L's level 1 (of 0-3): an 11,000-file JSON page in 5 ms, and smaller (1.15 MB) than
# zlib's level 1 makes it (1.29 MB) in 25.
GZIP_LEVEL = 1


# A rendering this big is kept gzip-encoded only: the page of an 11,000-file project is
# 7.3 MB as it is and 0.8 MB encoded, and pip and uv take gzip; the rare client that does
# not gets it decompressed (15 ms) on each request, a piece at a time as it is sent.
KEEP_PLAIN_BELOW = 256 * 1024
# The pieces such a rendering is decompressed in for a client that does not take gzip.
SEND_PIECE = 256 * 1024
# zlib's wbits for a gzip container with the largest window.
_GZIP_WBITS = 16 + 15


class Representation:
    """One rendering of a page, and its gzip-encoded form once a client asks for it."""

    __slots__ = ("_gzipped", "_plain", "etag", "length")

    def __init__(self, body: bytes, etag: str) -> None:
        self._plain: bytes | None = body
        self.etag = etag
        self.length = len(body)
        self._gzipped: Representation | None = None

    @classmethod
    def made_of(cls, parts: Iterable[bytes]) -> Representation:
        """The rendering whose bytes are ``parts`` one after another.

        A big one goes into its gzip form as it is made: the 7 MB of an 11,000-file
        page never exist at once, only its 0.8 MB encoded.
        """
        digest, held, length = hashlib.sha256(), [], 0
        remaining = iter(parts)
        for part in remaining:
            digest.update(part)
            held.append(part)
            length += len(part)
            if length >= KEEP_PLAIN_BELOW:
                break
        else:
            return cls(b"".join(held), _etag(digest))
        compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, _GZIP_WBITS)
        encoded = [compressor.compress(part) for part in held]
        held.clear()
        for part in remaining:
            digest.update(part)
            length += len(part)
            encoded.append(compressor.compress(part))
        encoded.append(compressor.flush())
        made = cls(b"", _etag(digest))
        made._plain, made.length = None, length
        made._gzipped = Representation(b"".join(encoded), made.etag[:-1] + '-gzip"')
        return made

    @property
    def body(self) -> bytes:
        plain = self._plain
        if plain is not None:
            return plain
        encoded = self._gzipped
        assert encoded is not None, "the plain bytes are dropped only once encoded"
        return igzip.decompress(encoded.body)

    def pieces(self) -> Iterable[bytes]:
        """The bytes to send: one kept encoded only is decompressed as it goes out, so a
        client that does not take gzip never costs the process the page's plain bytes."""
        plain = self._plain
        if plain is not None:
            return [plain]  # a list: what goes out whole is measured without wrapping
        encoded = self._gzipped
        assert encoded is not None, "the plain bytes are dropped only once encoded"
        return _inflated(encoded.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Representation):
            return NotImplemented
        return (self.body, self.etag) == (other.body, other.etag)

    def __hash__(self) -> int:
        return hash(self.etag)

    def gzipped(self) -> Representation:
        """The same bytes gzip-encoded, under their own ETag (RFC 9110: strong ETags differ)."""
        found = self._gzipped
        if found is None:
            found = self._gzipped = Representation(gzip_bytes(self.body), self.etag[:-1] + '-gzip"')
            if self.length >= KEEP_PLAIN_BELOW:
                self._plain = None
        return found


def gzip_bytes(body: bytes) -> bytes:
    """Deterministic gzip (no time in the header), so the bytes are one ETag's."""
    return igzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def _inflated(encoded: bytes) -> Iterator[bytes]:
    inflater = isal_zlib.decompressobj(_GZIP_WBITS)
    pending = encoded
    while not inflater.eof:
        piece = inflater.decompress(pending, SEND_PIECE)
        pending = inflater.unconsumed_tail
        if not piece and not pending:
            break  # no more output: a stream that ends early stops here, not in a loop
        yield piece
    rest = inflater.flush()
    if rest:
        yield rest


# What a file costs a page in memory, measured: its facts (about 850 bytes), and its entry
# in each rendering, kept as it is while the rendering is small (JSON about 530 bytes,
# HTML 310, a tenth more once gzip-encoded too) and gzip-encoded only once big (75 and 60).
# A flat 2,000 bytes counted an 11,000-file page twice over, and the pages of a real
# install set (50,000 files) no longer fitted the default cache: its big projects' pages
# were read from the database again for every download.
FACT_BYTES = 900
ENTRY_BYTES = {"json": (600, 80), "html": (350, 70)}  # (kept as it is, encoded only)


class RenderedPage:
    """A project page ready to send: its files, and each rendering once it is asked for.

    Clients of one page mostly want one rendering (pip and uv take JSON), so the
    other is never made for them: rendering is a page's biggest cost after the fetch.
    Renderings are deterministic, so two threads rendering at once make the same bytes.
    """

    __slots__ = ("_data", "_rendered", "_renderings", "files", "name", "private", "serial")

    def __init__(self, data: PageData) -> None:
        ordered = sorted(data.files, key=lambda f: f.filename)
        self.name = data.name
        self.serial = data.serial
        self.files: dict[str, FileFacts] = {f.filename: f for f in ordered}
        self.private = data.private  # mutable: clients must revalidate every time
        self._data = replace(data, files=ordered)
        self._renderings: dict[str, Representation] = {}
        self._rendered = threading.Event()

    def __repr__(self) -> str:
        return f"RenderedPage({self.name!r}, serial={self.serial}, {len(self.files)} files)"

    @property
    def data(self) -> PageData:
        """What the page was built from (a merged page is built from several)."""
        return self._data

    @property
    def html(self) -> Representation:
        return self._rendering("html")

    @property
    def json(self) -> Representation:
        return self._rendering("json")

    @property
    def size(self) -> int:
        """What the page costs in memory, both renderings made or not (an estimate)."""
        files = len(self.files) + 1
        rendered = sum(
            plain * files if plain * files < KEEP_PLAIN_BELOW else encoded * files
            for plain, encoded in ENTRY_BYTES.values()
        )
        return FACT_BYTES * files + rendered + 100 * len(self._data.versions)

    def same_as(self, other: RenderedPage) -> bool:
        """Whether ``other`` shows this page, so this one's renderings may stand for it."""
        if self._data == other._data:
            return True
        # A big first page, served before its write gave its name a serial, stays what it
        # is once written: the same files, the same bytes and ETag; the serial shows
        # from the page's next change on.
        return self.serial is None and replace(other._data, serial=None) == self._data

    def representation(self, media_type: str) -> Representation:
        return self.json if media_type == JSON_TYPE else self.html

    def _rendering(self, kind: str) -> Representation:
        found = self._renderings.get(kind)
        if found is None:
            data = self._data
            status = (data.status, data.status_reason)
            if kind == "json":
                parts = json_parts(data.name, data.serial, data.versions, data.files, status)
            else:
                parts = html_parts(data.name, data.display_name, data.serial, data.files, status)
            # A big one is kept encoded only, whichever client asked first.
            made = Representation.made_of(parts)
            found = self._renderings.setdefault(kind, made)
            self._rendered.set()
        return found

    def wait_rendered(self, timeout: float) -> bool:
        """Wait until a rendering has been made (for whoever asked first), or ``timeout``."""
        return self._rendered.wait(timeout)


def left_to(page: RenderedPage, kept: Sequence[FileFacts]) -> RenderedPage:
    """``page`` showing only the files ``kept`` (rules and snapshots leave some out).

    A version left with no files leaves ``versions``, so an installer does not pick
    it; one that never had files stays, as the upstream listed it.
    """
    left = {version_key(f.version) for f in kept}
    gone = {version_key(f.version) for f in page.files.values()} - left
    data = page.data
    versions = [v for v in data.versions if version_key(v) not in gone]
    return RenderedPage(replace(data, files=kept, versions=versions))


def version_key(version: str | None) -> str:
    """A version as releases are compared (``1.0`` is ``1.0.0``); any text stays itself."""
    if version is None:
        return ""
    try:
        return canonicalize_version(version)
    except ValueError:
        return version


def etag_of(body: bytes) -> str:
    return _etag(hashlib.sha256(body))


def _etag(digest: Any) -> str:
    return '"' + digest.hexdigest()[:40] + '"'


def render(page: PageData) -> RenderedPage:
    return RenderedPage(page)


# Files rendered at a time: a big page is made a part at a time, so rendering 11,000
# files never holds every file's intermediate objects, nor the text twice over (16-18
# MB that stayed in the process as fragmented heap).
_PART = 500


def html_parts(
    project: str,
    display_name: str,
    serial: int | None,
    files: Sequence[FileFacts],
    status: tuple[str | None, str | None] = (None, None),
) -> Iterator[bytes]:
    """PEP 503 HTML in which every value is escaped: upstream text never becomes markup.

    The upstream's digests are validated where they enter, but they are escaped
    here too, like every other value, so one missed check is not script on our origin.
    """
    name = _attr(display_name)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
    ]
    state, reason = status
    if state:
        lines.append(f'    <meta name="pypi:project-status" content="{_attr(state)}">')
        if reason:
            lines.append(f'    <meta name="pypi:project-status-reason" content="{_attr(reason)}">')
    lines += [
        f"    <title>Links for {name}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {name}</h1>",
    ]
    yield ("\n".join(lines) + "\n").encode()
    for start in range(0, len(files), _PART):
        part = files[start : start + _PART]
        yield "".join([_html_link(project, f) for f in part]).encode()
    tail = ["  </body>", "</html>"]
    if serial is not None:
        tail.append(f"<!--SERIAL {int(serial)}-->")
    yield ("\n".join(tail) + "\n").encode()


def _html_link(project: str, f: FileFacts) -> str:
    fragment = f"#sha256={f.sha256}" if f.sha256 else ""
    attrs = [f'href="{_attr(file_href(project, f.filename) + fragment)}"']
    if f.requires_python:
        attrs.append(f'data-requires-python="{_attr(f.requires_python)}"')
    if f.yanked:
        # Always with a value: pip reads a bare data-yanked as "not yanked".
        attrs.append(f'data-yanked="{_attr(f.yanked_reason or "")}"')
    if f.has_metadata:
        value = _attr(f"sha256={f.metadata_sha256}" if f.metadata_sha256 else "true")
        attrs.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
    # No data-provenance: HTML wants it fully qualified, which would make the page
    # depend on the Host it was asked by; JSON (what pip and uv read) carries it.
    return f"    <a {' '.join(attrs)}>{_attr(f.filename)}</a><br />\n"


def _attr(value: str) -> str:
    """Escaped for an attribute in double or single quotes, and so for text as well."""
    return escape(value, quote=True)


def json_parts(
    name: str,
    serial: int | None,
    versions: Sequence[str],
    files: Sequence[FileFacts],
    status: tuple[str | None, str | None] = (None, None),
) -> Iterator[bytes]:
    """PEP 691 JSON, keys in sorted order: every object is built in that order, which is
    what ``sort_keys`` would give, without sorting each of a big page's 11,000 entries."""
    meta: dict[str, Any] = {}
    if serial is not None:
        meta["_last-serial"] = serial
    # `size` is mandatory from 1.1 on; a page with an unknown size claims only 1.0.
    meta["api-version"] = API_VERSION if all(f.size is not None for f in files) else "1.0"
    rest: dict[str, Any] = {"meta": meta, "name": name}
    state, reason = status
    if state:
        rest["project-status"] = (
            {"reason": reason, "status": state} if reason else {"status": state}
        )
    rest["versions"] = sort_versions(versions)
    # Compact UTF-8, as json.dumps(separators=(",", ":"), ensure_ascii=False) gives, in a
    # seventh of its time: on an 11,000-file page the encoder was half of rendering.
    # "files" sorts first; the entries are encoded a part at a time.
    prefix = _href_prefix(name)
    yield b'{"files":['
    for start in range(0, len(files), _PART):
        if start:
            yield b","
        yield orjson.dumps([_json_file(prefix, f) for f in files[start : start + _PART]])[1:-1]
    yield b"],"
    yield orjson.dumps(rest)[1:]


def _href_prefix(project: str) -> str:
    return f"../../packages/{quote(project, safe='')}/"


# File names that percent-encoding leaves as they are (``quote``'s always-safe characters).
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _json_file(href_prefix: str, f: FileFacts) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if f.has_metadata:
        value: Any = {"sha256": f.metadata_sha256} if f.metadata_sha256 else True
        entry["core-metadata"] = value
        entry["data-dist-info-metadata"] = value
    entry["filename"] = f.filename
    entry["hashes"] = {"sha256": f.sha256} if f.sha256 else {}
    filename = f.filename
    url = href_prefix + (filename if _UNQUOTED.fullmatch(filename) else quote(filename, safe=""))
    if f.provenance is not None:
        entry["provenance"] = url + PROVENANCE_SUFFIX
    if f.requires_python:
        entry["requires-python"] = f.requires_python
    if f.size is not None:
        entry["size"] = f.size
    if f.upload_time is not None:
        entry["upload-time"] = format_upload_time(f.upload_time)
    entry["url"] = url
    if f.yanked:
        # Never "" (pip: not yanked, uv: yanked) and never null (uv rejects the page).
        entry["yanked"] = f.yanked_reason or True
    return entry


def format_upload_time(value: datetime) -> str:
    """PyPI's spelling: ISO 8601 in UTC with a ``Z``, microseconds only when non-zero."""
    if value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return value.isoformat() + "Z"


def sort_versions(versions: Sequence[str]) -> list[str]:
    def key(text: str) -> tuple[int, Version | str]:
        try:
            return (0, Version(text))
        except InvalidVersion:
            return (1, text)

    return sorted(set(versions), key=lambda v: (*key(v), v))  # type: ignore[arg-type]
