"""Distribution files and their core metadata: from the blob store, or streamed while filled."""

from __future__ import annotations

from collections.abc import Iterator

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.cache.rendering import FileRecord
from pypicache.errors import FileNotFound
from pypicache.names import normalize_project
from pypicache.storage.local import BlobReader
from pypicache.web.httputil import Unsatisfiable, etag_matches, parse_range
from pypicache.web.observe import note_cache
from pypicache.web.security import READ

METADATA_SUFFIX = ".metadata"
CHUNK = 256 * 1024
# Safe only because a filename never gets different bytes here (hashes rule).
IMMUTABLE = "max-age=365000000, immutable, public"


@view_config(route_name="file", request_method=("GET", "HEAD"), permission=READ)
def download(request: Request) -> Response:
    project = normalize_project(request.matchdict["project"])
    filename = request.matchdict["filename"]
    index = request.files
    if filename.endswith(METADATA_SUFFIX):
        record = index.locate_file(project, filename.removesuffix(METADATA_SUFFIX))
        handle = index.open_stored(record.metadata_sha256)
        note_cache(request, "metadata", "hit" if handle is not None else "miss")
        if handle is None:
            handle = index.open_metadata(record)
        return blob_response(request, handle, record.metadata_sha256, record)
    record = index.locate_file(project, filename)
    handle = index.open_stored(record.sha256)
    if handle is not None:
        note_cache(request, "file", "hit")
        if request.method == "GET":
            location = index.download_url(record)
            if location is not None:
                return _redirect(request, handle, location, record)
        return blob_response(request, handle, record.sha256, record)
    if request.method == "HEAD" and record.size is not None:
        # Announce without fetching: uv probes range support with HEAD.
        return Response(headerlist=_file_headers(record.sha256, record), content_length=record.size)
    fill = index.fill(record)
    note_cache(request, "file", "miss" if fill is not None else "hit")
    if fill is None:  # stored by another request a moment ago
        return blob_response(request, index.open_stored(record.sha256), record.sha256, record)
    size = fill.wait_started()
    if size is None or request.headers.get("Range"):
        # Without a size there is no Content-Length to promise; a range needs the whole file.
        sha256 = fill.wait_finished()
        return blob_response(request, index.open_stored(sha256), sha256, record)
    headers = _file_headers(record.sha256, record)
    return Response(headerlist=headers, app_iter=fill.chunks(), content_length=size)


def _redirect(request: Request, handle: BlobReader, location: str, record: FileRecord) -> Response:
    """Send the client to the object store (storage_redirect): a presigned, short-lived URL."""
    handle.close()  # it only proved the blob is stored
    headers = _file_headers(record.sha256, record)
    etag = f'"sha256:{record.sha256}"'
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headerlist=headers)
    # The URL expires soon: nobody may cache the redirect, only the file it leads to.
    return Response(
        status=302,
        headerlist=[("Location", location), ("Cache-Control", "no-store")],
    )


def blob_response(
    request: Request, handle: BlobReader | None, sha256: str | None, record: FileRecord
) -> Response:
    if handle is None:
        raise FileNotFound(f"{record.filename} vanished from the store")
    size = handle.size
    headers = _file_headers(sha256, record)
    etag = f'"sha256:{sha256}"' if sha256 else None
    if etag and etag_matches(request.headers.get("If-None-Match"), etag):
        handle.close()
        return Response(status=304, headerlist=headers)
    wanted = request.headers.get("Range")
    if wanted and request.headers.get("If-Range") not in (None, etag):
        wanted = None  # the client holds other bytes: send the whole file
    try:
        byte_range = parse_range(wanted, size)
    except Unsatisfiable:
        handle.close()
        headers.append(("Content-Range", f"bytes */{size}"))
        return Response(status=416, headerlist=headers)
    status, length = 200, size
    if byte_range is not None:
        handle.seek(byte_range.start)
        status, length = 206, byte_range.length
        headers.append(("Content-Range", f"bytes {byte_range.start}-{byte_range.end}/{size}"))
    wrapper = request.environ.get("wsgi.file_wrapper")
    # The server's file wrapper for real files (sendfile); anything else is read here.
    app_iter = wrapper(handle, CHUNK) if wrapper and _is_file(handle) else _limited(handle, length)
    return Response(status=status, headerlist=headers, app_iter=app_iter, content_length=length)


def _is_file(handle: BlobReader) -> bool:
    try:
        handle.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False
    return True


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


def _file_headers(sha256: str | None, record: FileRecord) -> list[tuple[str, str]]:
    # An explicit type and no Content-Encoding: a .tar.gz must not look gzip-encoded.
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", IMMUTABLE),
    ]
    if sha256:
        headers.append(("ETag", f'"sha256:{sha256}"'))
    if record.upload_time is not None:
        headers.append(("Last-Modified", record.upload_time.strftime("%a, %d %b %Y %H:%M:%S GMT")))
    return headers
