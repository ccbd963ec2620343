"""Distribution files and their core metadata: from the blob store, or streamed while filled."""

from __future__ import annotations

from collections.abc import Iterator

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.filefacts import FileFacts
from pypicache.names import normalize_project
from pypicache.storage.local import BlobReader
from pypicache.web.httputil import Unsatisfiable, etag_matches, parse_range
from pypicache.web.observe import note_cache
from pypicache.web.security import READ

CHUNK = 256 * 1024
# Safe only because a filename never gets different bytes here (hashes rule).
IMMUTABLE = "max-age=365000000, immutable, public"


@view_config(route_name="file", request_method=("GET", "HEAD"), permission=READ)
def download(request: Request) -> Response:
    answer = request.services.files.open(
        normalize_project(request.matchdict["project"]),
        request.matchdict["filename"],
        head=request.method == "HEAD",
        ranged=bool(request.headers.get("Range")),
        note=lambda kind, result: note_cache(request, kind, result),
    )
    facts = answer.facts
    if answer.location is not None:
        return _redirect(request, answer.location, facts)
    if answer.handle is not None:
        return blob_response(request, answer.handle, answer.sha256, facts)
    headers = _file_headers(answer.sha256, facts)
    return Response(headerlist=headers, app_iter=answer.chunks, content_length=answer.size)


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


def _file_headers(sha256: str | None, facts: FileFacts) -> list[tuple[str, str]]:
    # An explicit type and no Content-Encoding: a .tar.gz must not look gzip-encoded.
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", IMMUTABLE),
    ]
    if sha256:
        headers.append(("ETag", f'"sha256:{sha256}"'))
    if facts.upload_time is not None:
        headers.append(("Last-Modified", facts.upload_time.strftime("%a, %d %b %Y %H:%M:%S GMT")))
    return headers
