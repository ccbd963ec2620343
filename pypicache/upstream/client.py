"""The upstream client: project pages, the project list and files, over HTTP(S) or file://."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from isal import isal_zlib
from packaging.utils import (
    canonicalize_name,
)
from urllib3.util.retry import Retry

from pypicache.errors import (
    ChangelogUnavailable,
    FileNotFound,
    ProjectNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pypicache.upstream.entries import (
    InvalidPage,
    NotModified,
    UpstreamNames,
    UpstreamPage,
    checked_file,
    checked_page,
    local_path,
    page_of,
    parse_serial,
    reject,
    valid_names,
    valid_project_name,
)
from pypicache.upstream.guardedhttp import GuardedAdapter
from pypicache.upstream.pages import parse_page
from pypicache.upstream.urlpolicy import IPNetwork, URLPolicy, URLRefused, redirect_target

if TYPE_CHECKING:
    from pypicache.ops.metrics import Metrics

log = logging.getLogger(__name__)

# What uv sends: JSON first, HTML as the fallback for indexes without PEP 691.
PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
CHUNK = 64 * 1024
# A project page larger than this, decompressed, is refused (pypicache.max_page_bytes).
MAX_PAGE_BYTES = 128 * 1024 * 1024
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg")
_ANCHOR = re.compile(rb"<a\s[^>]*>([^<]*)</a>", re.IGNORECASE)
MAX_REDIRECTS = 5  # of one file download, each hop checked by the URL policy


class ProjectSerials:
    """(normalized name, serial) pairs of a JSON project list; ``serial`` once exhausted."""

    _OBJECT = re.compile(rb"\{[^{}]*\}")

    def __init__(self, response: requests.Response, metrics: Metrics | None = None) -> None:
        self._response = response
        self._metrics = metrics
        self.etag: str | None = response.headers.get("ETag")
        self.serial = parse_serial(response.headers.get("X-PyPI-Last-Serial"))

    def __iter__(self) -> Iterator[tuple[str, int]]:
        with self._response as response:
            tail = b""
            try:
                for chunk in response.iter_content(CHUNK):
                    buffer = tail + chunk
                    end = 0
                    for match in self._OBJECT.finditer(buffer):
                        end = match.end()
                        yield from self._entry(match.group())
                    tail = buffer[end:]
            except requests.RequestException as exc:
                raise UpstreamUnavailable(f"upstream list broke off: {exc}") from exc

    def _entry(self, raw: bytes) -> Iterator[tuple[str, int]]:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        serial = data.get("_last-serial")
        if not isinstance(serial, int):
            return
        if "name" in data:
            name = data["name"]
            if valid_project_name(name):
                yield canonicalize_name(name), serial
            else:
                reject("name", "/simple/", name, "not a valid project name", self._metrics)
        elif "api-version" in data:  # the meta object
            self.serial = max(self.serial or 0, serial)


class UpstreamStream:
    """An open upstream file: its announced size and its bytes, read in chunks."""

    def __init__(
        self, size: int | None, chunks: Iterator[bytes], close: Callable[[], None]
    ) -> None:
        self.size = size
        self._chunks = chunks
        self._close = close

    def iter_chunks(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._close()

    def __enter__(self) -> UpstreamStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UpstreamClient:
    """Talks to one upstream index; every call has a timeout and maps failures to our errors."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        retries: int,
        metrics: Metrics | None = None,
        allowed_networks: Iterable[IPNetwork] = (),
    ) -> None:
        self.base_url = base_url
        self.metrics = metrics
        # Where URLs from the upstream's pages may lead; every connection is checked.
        self.policy = URLPolicy(base_url, allowed_networks)
        self.timeout = (connect_timeout, read_timeout)
        self.is_local = urlsplit(base_url).scheme == "file"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"pypicache/{dist_version('pypicache')}"
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.25,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=("GET", "HEAD"),
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        adapter = GuardedAdapter(self.policy, max_retries=retry, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def project_url(self, name: str) -> str:
        return urljoin(self.base_url, quote(name) + "/")

    # -- project pages ---------------------------------------------------------------------

    def fetch_project(
        self,
        name: str,
        etag: str | None = None,
        cache_buster: str | None = None,
        *,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> UpstreamPage | NotModified:
        """Fetch ``name``'s page, conditionally when we hold an ``etag``.

        ``cache_buster`` adds a query parameter, for a CDN that keeps serving a
        page older than the changelog says it is.  The body is read decompressed
        up to ``max_bytes``: a bigger page (a gzip bomb) raises InvalidPage
        without ever being held in memory whole.
        """
        if self.is_local:
            return self._local_project(name)
        # Only codings we inflate ourselves, in bounded steps.
        headers = {"Accept": PAGE_ACCEPT, "Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        url = self.project_url(name)
        if cache_buster:
            url += f"?pypicache-refresh={cache_buster}"
        response = self._get(url, kind="page", headers=headers, stream=True)
        with response:
            serial = parse_serial(response.headers.get("X-PyPI-Last-Serial"))
            if response.status_code == 304:
                return NotModified(serial)
            if response.status_code in (404, 410):
                raise ProjectNotFound(name)
            if response.status_code != 200:
                raise UpstreamUnavailable(f"upstream answered {response.status_code} for {url}")
            try:
                body = self._page_body(response, max_bytes)
                return parse_page(
                    name,
                    body,
                    response.headers.get("Content-Type"),
                    response.url,
                    serial=serial,
                    etag=response.headers.get("ETag"),
                    metrics=self.metrics,
                )
            except InvalidPage as exc:
                self._error("page", "invalid")
                raise InvalidPage(f"{url}: {exc}") from exc

    def _page_body(
        self, response: requests.Response, max_bytes: int, kind: str = "page"
    ) -> bytearray:
        """The decompressed body, refused once it grows past ``max_bytes``; as it was read,
        not copied (an 11,000-file page's body is 7 MB)."""
        body = bytearray()
        try:
            raw = response.raw.stream(CHUNK, decode_content=False)
            for chunk in decoded(raw, response.headers.get("Content-Encoding", "")):
                body += chunk
                if len(body) > max_bytes:
                    raise InvalidPage(f"{kind} larger than {max_bytes} bytes")
        except requests.Timeout as exc:
            self._error(kind, "timeout")
            raise UpstreamTimeout(f"upstream timed out during {response.url}") from exc
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            self._error(kind, "connection")
            raise UpstreamUnavailable(f"upstream {kind} broke off: {response.url}: {exc}") from exc
        finally:
            self._count(kind, len(body))
        return body

    def _local_project(self, name: str) -> UpstreamPage:
        root = local_path(self.base_url)
        directory = root / name
        if not directory.is_dir():
            found = [p for p in _subdirs(root) if canonicalize_name(p.name) == name]
            if not found:
                raise ProjectNotFound(name)
            directory = found[0]
        # Only here: pypi_simple brings its parsers (bs4, lxml, pydantic: 16 MB) with it.
        from pypi_simple import DistributionPackage, Link, ProjectPage

        index = directory / "index.html"
        if index.is_file():
            base_url = index.as_uri()
            page = ProjectPage.from_html(name, index.read_bytes(), base_url=base_url)
            return checked_page(
                name, page, None, None, local=True, metrics=self.metrics, base_url=base_url
            )
        entries = (
            checked_file(
                DistributionPackage.from_link(Link(p.name, p.as_uri(), {}), name),
                name,
                size=p.stat().st_size,
                sha256=_sha256_file(p),
                metrics=self.metrics,
                base_url=directory.as_uri() + "/",
            )
            for p in sorted(directory.iterdir())
            if p.is_file() and p.name.endswith(DIST_SUFFIXES)
        )
        files = tuple(f for f in entries if f is not None)
        return page_of(name, files, None, None, None, None, None)

    # -- the project list ------------------------------------------------------------------

    def project_list(self, etag: str | None = None) -> UpstreamNames | NotModified:
        """The upstream's ``/simple/`` list, parsed while it streams (PyPI's is huge)."""
        if self.is_local:
            names = (p.name for p in _subdirs(local_path(self.base_url)))
            return UpstreamNames(valid_names(names, self.metrics), None, None)
        headers = {"Accept": "text/html"}
        if etag:
            headers["If-None-Match"] = etag
        response = self._get(self.base_url, kind="list", headers=headers, stream=True)
        serial = parse_serial(response.headers.get("X-PyPI-Last-Serial"))
        if response.status_code == 304:
            response.close()
            return NotModified(serial)
        if response.status_code != 200:
            response.close()
            raise UpstreamUnavailable(f"upstream answered {response.status_code} for its list")
        names = valid_names(_anchor_texts(response), self.metrics)
        return UpstreamNames(names, response.headers.get("ETag"), serial)

    def project_serials(self, etag: str | None = None) -> ProjectSerials | NotModified:
        """The PEP 691 JSON project list's ``_last-serial`` per project, streamed.

        PyPI's list is tens of megabytes, so it is parsed one small object at a
        time; raises UpstreamUnavailable when the upstream offers no such list.
        """
        if self.is_local:
            raise UpstreamUnavailable("a file:// upstream has no project serials")
        headers = {"Accept": "application/vnd.pypi.simple.v1+json"}
        if etag:
            headers["If-None-Match"] = etag
        response = self._get(self.base_url, kind="serials", headers=headers, stream=True)
        if response.status_code == 304:
            response.close()
            return NotModified(parse_serial(response.headers.get("X-PyPI-Last-Serial")))
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.status_code != 200 or content_type != "application/vnd.pypi.simple.v1+json":
            response.close()
            reason = f"upstream project list has no serials ({response.status_code} {content_type})"
            if response.status_code in (200, 404, 410):
                # It answers, and what it says is that it keeps no serials (a static index).
                raise ChangelogUnavailable(reason)
            raise UpstreamUnavailable(reason)
        return ProjectSerials(response, self.metrics)

    # -- documents a page links to ---------------------------------------------------------

    def fetch_document(self, url: str, *, kind: str, accept: str, max_bytes: int) -> bytes:
        """The whole of a small document a page links to (a file's PEP 740 provenance).

        The URL policy, redirects and timeouts are those of ``open``; the body is read
        decompressed up to ``max_bytes`` (InvalidPage past that).  FileNotFound when
        the upstream answers 404 or 410: it has no such document.
        """
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                path = self.policy.check_url(url)
            except URLRefused as exc:
                self._error(kind, "refused")
                log.warning("%s", exc)
                raise
            if path is not None:
                return _local_document(path, kind, max_bytes)
            headers = {"Accept": accept, "Accept-Encoding": "gzip, deflate"}
            response = self._get(
                url, kind=kind, headers=headers, stream=True, allow_redirects=False
            )
            redirected = self._redirected(response, kind)
            if redirected is not None:
                url = redirected
                continue
            with response:
                if response.status_code in (404, 410):
                    raise FileNotFound(f"the upstream has no {kind} at {url}")
                if response.status_code != 200:
                    raise UpstreamUnavailable(f"upstream answered {response.status_code} for {url}")
                return bytes(self._page_body(response, max_bytes, kind))
        self._error(kind, "redirects")
        raise UpstreamUnavailable(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    # -- files -----------------------------------------------------------------------------

    def open(self, url: str) -> UpstreamStream:
        """Start downloading ``url``; the caller reads the chunks and must close the stream.

        The URL comes from a page, so the URL policy decides where it may lead. Redirects
        are followed here, at most MAX_REDIRECTS, each hop checked like the first URL.
        """
        kind = "metadata" if url.endswith(".metadata") else "file"
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                path = self.policy.check_url(url)
            except URLRefused as exc:
                self._error(kind, "refused")
                log.warning("%s", exc)
                raise
            if path is not None:
                try:
                    handle: BinaryIO = path.open("rb")
                except OSError as exc:
                    raise UpstreamUnavailable(f"cannot read {path}: {exc}") from exc
                chunks = iter(partial(handle.read, CHUNK), b"")
                return UpstreamStream(path.stat().st_size, chunks, handle.close)
            response = self._get(
                url,
                kind=kind,
                headers={"Accept-Encoding": "identity"},
                stream=True,
                allow_redirects=False,
            )
            redirected = self._redirected(response, kind)
            if redirected is not None:
                url = redirected
                continue
            if response.status_code != 200:
                response.close()
                raise UpstreamUnavailable(f"upstream answered {response.status_code} for {url}")
            length = response.headers.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
            return UpstreamStream(size, self._file_chunks(response, kind), response.close)
        self._error(kind, "redirects")
        raise UpstreamUnavailable(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    def open_range(self, url: str, start: int, end: int, size: int) -> UpstreamStream | None:
        """Start downloading bytes ``start`` to ``end`` (inclusive) of ``url``, a file of ``size``.

        For a client that wants part of a file not cached yet (uv reads a wheel's last
        bytes first), while the whole file is fetched apart. The URL policy, redirects
        and timeouts are those of ``open``. None unless the upstream answers 206 with
        exactly that range of a file of that size: the caller then waits for the whole
        file. The stream yields at most the range's length and raises if it ends short.
        """
        length = end - start + 1
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                path = self.policy.check_url(url)
            except URLRefused as exc:
                self._error("range", "refused")
                log.warning("%s", exc)
                raise
            if path is not None:
                return self._local_range(path, start, length, size)
            # Always first-last: a CDN may not take a suffix range (PyPI's does not).
            headers = {"Accept-Encoding": "identity", "Range": f"bytes={start}-{end}"}
            response = self._get(
                url, kind="range", headers=headers, stream=True, allow_redirects=False
            )
            redirected = self._redirected(response, "range")
            if redirected is not None:
                url = redirected
                continue
            if not self._is_exact_range(response, start, end, size):
                if response.status_code == 206:  # a 200 only means no range support
                    self._error("range", "invalid")
                    log.warning(
                        "upstream answered bytes %d-%d/%d of %s with Content-Range %r",
                        start,
                        end,
                        size,
                        url,
                        response.headers.get("Content-Range"),
                    )
                response.close()
                return None
            chunks = self._bounded(self._file_chunks(response, "range"), length, url)
            return UpstreamStream(length, chunks, response.close)
        self._error("range", "redirects")
        raise UpstreamUnavailable(f"more than {MAX_REDIRECTS} redirects, the last to {url}")

    # Digits bounded in number, so int() never meets a huge one.
    _CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})", re.ASCII)
    _LENGTH = re.compile(r"[0-9]{1,19}", re.ASCII)

    @classmethod
    def _is_exact_range(cls, response: requests.Response, start: int, end: int, size: int) -> bool:
        """Whether the answer is exactly bytes ``start``-``end`` of a ``size``-byte file, as is.

        Every header the range's bytes are trusted by is checked: the status, a single
        Content-Range naming this range of a file of the size the page gives, a single
        Content-Length of the range's length, and no transfer or content coding.
        """
        headers = response.headers
        content_range = cls._CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        length = cls._LENGTH.fullmatch(headers.get("Content-Length", "").strip())
        return (
            response.status_code == 206
            and content_range is not None
            and tuple(int(group) for group in content_range.groups()) == (start, end, size)
            and length is not None
            and int(length.group()) == end - start + 1
            and "Transfer-Encoding" not in headers
            and headers.get("Content-Encoding", "identity").strip().lower() == "identity"
        )

    @staticmethod
    def _bounded(chunks: Iterator[bytes], length: int, url: str) -> Iterator[bytes]:
        """At most ``length`` bytes of ``chunks``; raises when they end before that."""
        remaining = length
        for chunk in chunks:
            data = chunk[:remaining]
            remaining -= len(data)
            if data:
                yield data
            if not remaining:
                return
        raise UpstreamUnavailable(f"range of {url} broke off {remaining} bytes short")

    def _local_range(self, path: Path, start: int, length: int, size: int) -> UpstreamStream | None:
        """The range from a ``file://`` upstream's file, when the file has the expected size."""
        try:
            if path.stat().st_size != size:
                return None
            handle: BinaryIO = path.open("rb")
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot read {path}: {exc}") from exc
        handle.seek(start)
        chunks = self._bounded(iter(partial(handle.read, CHUNK), b""), length, path.as_uri())
        return UpstreamStream(length, chunks, handle.close)

    def _redirected(self, response: requests.Response, kind: str) -> str | None:
        """Where a redirect leads, once the URL policy allows it; None: no redirect."""
        if not response.is_redirect:
            return None
        target = self.session.get_redirect_target(response) or ""
        response.close()
        try:
            return redirect_target(response.url, target)
        except URLRefused as exc:
            self._error(kind, "refused")
            log.warning("%s", exc)
            raise

    def _get(
        self,
        url: str,
        *,
        kind: str,
        headers: dict[str, str],
        stream: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        self._count(kind)
        try:
            response = self.session.get(
                url,
                headers=headers,
                timeout=self.timeout,
                stream=stream,
                allow_redirects=allow_redirects,
            )
        except URLRefused as exc:  # the guarded connection would not connect to the address
            self._error(kind, "refused")
            log.warning("%s", exc)
            raise
        except requests.Timeout as exc:
            self._error(kind, "timeout")
            raise UpstreamTimeout(f"upstream timed out: {url}") from exc
        except requests.RequestException as exc:
            # With retries, a timeout arrives wrapped: MaxRetryError(reason=ReadTimeoutError).
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, urllib3.exceptions.ReadTimeoutError) or (
                isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
                and not isinstance(reason, urllib3.exceptions.NewConnectionError)
            ):
                self._error(kind, "timeout")
                raise UpstreamTimeout(f"upstream timed out: {url}") from exc
            self._error(kind, "connection")
            raise UpstreamUnavailable(f"upstream request failed: {url}: {exc}") from exc
        if response.status_code >= 500:
            self._error(kind, "status")
        return response

    def _file_chunks(self, response: requests.Response, kind: str) -> Iterator[bytes]:
        # The exact bytes (no content decoding): hashes are over what the upstream stores.
        try:
            for chunk in response.raw.stream(CHUNK, decode_content=False):
                self._count(kind, len(chunk))
                yield chunk
        except requests.Timeout as exc:
            self._error(kind, "timeout")
            raise UpstreamTimeout(f"upstream timed out during {response.url}") from exc
        except Exception as exc:
            self._error(kind, "connection")
            raise UpstreamUnavailable(
                f"upstream download broke off: {response.url}: {exc}"
            ) from exc

    def _count(self, kind: str, received: int | None = None) -> None:
        if self.metrics is not None:
            if received is None:
                self.metrics.upstream_requests.labels(kind).inc()
            else:
                self.metrics.upstream_bytes.labels(kind).inc(received)

    def _error(self, kind: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_errors.labels(kind, reason).inc()


def decoded(chunks: Iterable[bytes], content_encoding: str) -> Iterator[bytes]:
    """``chunks`` with their Content-Encoding undone, never more than CHUNK bytes at a time.

    Inflating in bounded steps is what keeps a few kilobytes that expand to
    gigabytes from ever being expanded beyond what the reader asks for.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    stream: Iterable[bytes] = chunks
    for coding in reversed(codings):  # the last coding applied is undone first
        if coding in ("gzip", "x-gzip"):
            stream = _inflate(stream, 16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            stream = _inflate(stream, zlib.MAX_WBITS)
        elif coding != "identity":
            raise InvalidPage(f"unsupported Content-Encoding {coding!r}")
    return iter(stream)


def _inflate(chunks: Iterable[bytes], wbits: int) -> Iterator[bytes]:
    """ISA-L's inflate: zlib's format, in half its time (a big page comes gzip-encoded)."""
    decoder = isal_zlib.decompressobj(wbits)
    try:
        for data in chunks:
            while data:
                if decoder.eof:  # another gzip member follows
                    decoder = isal_zlib.decompressobj(wbits)
                out = decoder.decompress(data, CHUNK)
                data = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                while out:
                    yield out
                    # A full buffer may leave output inside zlib: drain it, CHUNK at a time.
                    out = decoder.decompress(b"", CHUNK) if len(out) == CHUNK else b""
    except isal_zlib.error as exc:
        raise InvalidPage(f"undecodable compressed page: {exc}") from exc
    if not decoder.eof:
        raise InvalidPage("compressed page ends early")


def _anchor_texts(response: requests.Response) -> Iterator[str]:
    """Anchor texts of a streamed HTML list, one buffer at a time (constant memory)."""
    with response:
        tail = b""
        try:
            for chunk in response.iter_content(CHUNK):
                buffer = tail + chunk
                end = 0
                for match in _ANCHOR.finditer(buffer):
                    yield match.group(1).decode("utf-8", "replace").strip()
                    end = match.end()
                tail = buffer[end:] if end else buffer[-4096:]
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"upstream list broke off: {exc}") from exc


def _local_document(path: Path, kind: str, max_bytes: int) -> bytes:
    """A document of a ``file://`` upstream, read only when it is at most ``max_bytes``."""
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise FileNotFound(f"the upstream has no {kind} at {path}") from None
    except OSError as exc:
        raise UpstreamUnavailable(f"cannot read {path}: {exc}") from exc
    if len(body) > max_bytes:
        raise InvalidPage(f"{kind} larger than {max_bytes} bytes")
    return body


def _subdirs(root: Path) -> Iterator[Path]:
    try:
        yield from (p for p in sorted(root.iterdir()) if p.is_dir())
    except OSError as exc:
        raise UpstreamUnavailable(f"cannot list {root}: {exc}") from exc


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
