"""Distribution files and their core metadata: from the blob store, or streamed while filled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.cache.indexes import MAIN
from pypicache.cache.router import Source
from pypicache.errors import StorageUnavailable
from pypicache.filefacts import FileFacts
from pypicache.models import PRIVATE_PREFIX
from pypicache.names import normalize_project
from pypicache.storage.local import BlobReader
from pypicache.web.httputil import ByteRange, Unsatisfiable, etag_matches, parse_range
from pypicache.web.observe import note_cache
from pypicache.web.security import READ
from pypicache.web.views.simple import named_index, snapshot_moment, upstream_source

CHUNK = 256 * 1024
# Bodies up to this size are read in one go and sent as bytes.
SMALL_BODY = 64 * 1024
# Safe only because a filename never gets different bytes here (hashes rule).
IMMUTABLE = "max-age=365000000, immutable, public"
# A range passed on from the upstream before the whole file was verified.
UNVERIFIED = "no-store"


@view_config(route_name="file", request_method=("GET", "HEAD"), permission=READ)
def download(request: Request) -> Response:
    """A file of the page its project's name resolves to."""
    name = normalize_project(request.matchdict["project"])
    source = request.services.index.file_source(name, request.matchdict["filename"])
    return _download(request, source, name, MAIN)


@view_config(route_name="index_file", request_method=("GET", "HEAD"), permission=READ)
def index_download(request: Request) -> Response:
    """A file of a named index's page."""
    name = normalize_project(request.matchdict["project"])
    index = named_index(request)
    source = index.file_source(name, request.matchdict["filename"])
    return _download(request, source, name, index.name)


@view_config(route_name="snapshot_file", request_method=("GET", "HEAD"), permission=READ)
def snapshot_download(request: Request) -> Response:
    """A file of the index main's page as of the URL's time."""
    moment = snapshot_moment(request)
    name = normalize_project(request.matchdict["project"])
    source = request.services.index.file_source(name, request.matchdict["filename"])
    return _download(request, source, name, MAIN, moment)


@view_config(route_name="index_snapshot_file", request_method=("GET", "HEAD"), permission=READ)
def index_snapshot_download(request: Request) -> Response:
    """A file of a named index's page as of the URL's time."""
    moment = snapshot_moment(request)
    name = normalize_project(request.matchdict["project"])
    index = named_index(request)
    source = index.file_source(name, request.matchdict["filename"])
    return _download(request, source, name, index.name, moment)


@view_config(route_name="upstream_file", request_method=("GET", "HEAD"), permission=READ)
def upstream_download(request: Request) -> Response:
    """A file of one upstream's page, checked against that upstream's hash."""
    source = upstream_source(request)
    return _download(request, source, normalize_project(request.matchdict["project"]), None)


def _download(
    request: Request,
    source: Source,
    name: str,
    scope: str | None,
    moment: datetime | None = None,
) -> Response:
    """``scope``: the index whose rules apply (None: one upstream alone, the defaults);
    ``moment``: a snapshot's time."""
    guard = request.services.guard
    snapshots = request.services.snapshots
    private = source.name.startswith(PRIVATE_PREFIX)

    def admit(facts: FileFacts) -> None:
        # A file the snapshot never had is a 404 whatever the rules say of it today.
        if moment is not None:
            snapshots.admit(facts, moment)
        guard.admit(scope, name, facts, private=private)

    answer = source.files.open(
        name,
        request.matchdict["filename"],
        head=request.method == "HEAD",
        ranged=bool(request.headers.get("Range")),
        note=lambda kind, result: note_cache(request, kind, result),
        wanted_range=lambda facts: _wanted_range(request, facts),
        admit=admit,
    )
    facts = answer.facts
    if answer.location is not None:
        return _redirect(request, answer.location, facts)
    if answer.handle is not None:
        return blob_response(request, answer.handle, answer.sha256, facts)
    headers = _file_headers(answer.sha256, facts)
    status = 200
    if answer.span is not None:
        # The upstream's bytes, not yet checked against the hash: no ETag that vouches for
        # them, and no cache may keep them (the whole file, once verified, is immutable).
        status = 206
        span = answer.span
        headers = [
            (name, UNVERIFIED if name == "Cache-Control" else value)
            for name, value in headers
            if name != "ETag"
        ]
        headers.append(("Content-Range", f"bytes {span.start}-{span.end}/{facts.size}"))
    return Response(
        status=status, headerlist=headers, app_iter=answer.chunks, content_length=answer.size
    )


def _wanted_range(request: Request, facts: FileFacts) -> ByteRange | None:
    """The one range of a file not cached yet that the cache may answer from the upstream.

    None for every other case (If-None-Match matching, If-Range naming other bytes, a
    416, a header to ignore): the store answers those once the file is in it.
    """
    if facts.size is None:
        return None
    etag = _etag(facts.sha256)
    if etag and etag_matches(request.headers.get("If-None-Match"), etag):
        return None
    try:
        return _requested_range(request, etag, facts.size)
    except Unsatisfiable:
        return None


def _requested_range(request: Request, etag: str | None, size: int) -> ByteRange | None:
    """The single range to send of a file of ``size`` bytes, or None for the whole file."""
    wanted = request.headers.get("Range")
    if wanted and request.headers.get("If-Range") not in (None, etag):
        return None  # the client holds other bytes: send the whole file
    return parse_range(wanted, size)


def _redirect(request: Request, location: str, facts: FileFacts) -> Response:
    """Send the client to the object store (storage_redirect): a presigned, short-lived URL."""
    headers = _file_headers(facts.sha256, facts)
    etag = f'"sha256:{facts.sha256}"'
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headerlist=headers)
    # The URL expires soon: nobody may cache the redirect, only the file it leads to.
    return Response(
        status=302,
        headerlist=[("Location", location), ("Cache-Control", "no-store")],
    )


def blob_response(
    request: Request, handle: BlobReader, sha256: str | None, facts: FileFacts
) -> Response:
    size = handle.size
    headers = _file_headers(sha256, facts)
    etag = _etag(sha256)
    if etag and etag_matches(request.headers.get("If-None-Match"), etag):
        handle.close()
        return Response(status=304, headerlist=headers)
    try:
        byte_range = _requested_range(request, etag, size)
    except Unsatisfiable:
        handle.close()
        headers.append(("Content-Range", f"bytes */{size}"))
        return Response(status=416, headerlist=headers)
    status, length = 200, size
    if byte_range is not None:
        handle.seek(byte_range.start)
        status, length = 206, byte_range.length
        headers.append(("Content-Range", f"bytes {byte_range.start}-{byte_range.end}/{size}"))
    if length <= SMALL_BODY:
        # Read here and sent as one piece: a file wrapper costs the server's I/O thread
        # more than a core-metadata file or a small wheel takes to send.
        try:
            body = _read_exactly(handle, length)
        finally:
            handle.close()
        return Response(status=status, headerlist=headers, body=body)
    wrapper = request.environ.get("wsgi.file_wrapper")
    # The server's file wrapper for real files (sent by its I/O thread); anything else is
    # read here.
    app_iter = (
        wrapper(_SendWindow(handle), CHUNK)
        if wrapper and _is_file(handle)
        else _limited(handle, length)
    )
    return Response(status=status, headerlist=headers, app_iter=app_iter, content_length=length)


class _SendWindow:
    """A blob handle for the server's file wrapper whose reads return at most CHUNK bytes.

    waitress reads as much per send as the socket's send buffer holds (4 MB on
    loopback, more on a fast network), then reads it once more to skip what went
    out: eight downloads of a big file kept 50 MB more in the process, for good.
    """

    def __init__(self, handle: BlobReader) -> None:
        self._handle = handle

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(CHUNK if size < 0 else min(size, CHUNK))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def fileno(self) -> int:
        """The blob's file, for a server that sends it with ``sendfile``."""
        return self._handle.fileno()  # type: ignore[attr-defined]

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._handle.close()


def _is_file(handle: BlobReader) -> bool:
    try:
        handle.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False
    return True


def _read_exactly(handle: BlobReader, length: int) -> bytes:
    """``length`` bytes (an object store's stream gives them in pieces); a blob that ends
    sooner is a store failure, never a short answer."""
    pieces: list[bytes] = []
    remaining = length
    while remaining > 0:
        data = handle.read(remaining)
        if not data:
            raise StorageUnavailable(f"a stored blob ended {remaining} bytes early")
        pieces.append(data)
        remaining -= len(data)
    return b"".join(pieces)


def _limited(handle: BlobReader, length: int) -> Iterator[bytes]:
    try:
        while length > 0:
            data = handle.read(min(CHUNK, length))
            if not data:
                return
            length -= len(data)
            yield data
    finally:
        handle.close()


def _etag(sha256: str | None) -> str | None:
    return f'"sha256:{sha256}"' if sha256 else None


def _file_headers(sha256: str | None, facts: FileFacts) -> list[tuple[str, str]]:
    # An explicit type and no Content-Encoding: a .tar.gz must not look gzip-encoded.
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", IMMUTABLE),
    ]
    etag = _etag(sha256)
    if etag:
        headers.append(("ETag", etag))
    if facts.upload_time is not None:
        headers.append(("Last-Modified", facts.upload_time.strftime("%a, %d %b %Y %H:%M:%S GMT")))
    return headers
