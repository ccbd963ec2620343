"""The simple repository API: /simple/ and /simple/<project>/ in HTML and JSON."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from pyramid.httpexceptions import (
    HTTPMethodNotAllowed,
    HTTPMovedPermanently,
    HTTPNotAcceptable,
    HTTPNotFound,
)
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.cache.index import CachedPage
from pypicache.cache.indexes import MAIN
from pypicache.cache.projectlist import ProjectList
from pypicache.cache.rendering import CONTENT_TYPES, GZIP_MIN_BYTES, JSON_TYPE
from pypicache.cache.router import Router, Source
from pypicache.names import normalize_project
from pypicache.web.httputil import etag_matches
from pypicache.web.negotiation import accepts_gzip, select_media_type
from pypicache.web.observe import note_cache
from pypicache.web.security import READ

STALE_CACHE_CONTROL = "max-age=0, must-revalidate, no-cache, no-store"
# Our pages run no script and load nothing: a browser that opens one must not either,
# whatever text the upstream managed to put in it.
SIMPLE_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
SIMPLE_SECURITY_HEADERS = (
    ("Content-Security-Policy", SIMPLE_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
)


class Pages(Protocol):
    """Whoever answers for project pages: every source by route, or one upstream alone."""

    def lookup_page(self, name: str) -> tuple[CachedPage, str]: ...


NOT_ACCEPTABLE = (
    b"406 Not Acceptable: this index serves application/vnd.pypi.simple.v1+json, "
    b"application/vnd.pypi.simple.v1+html and text/html\n"
)


def page_response(
    entry: CachedPage,
    media_type: str,
    if_none_match: str | None,
    max_age: int,
    accept_encoding: str | None = None,
) -> tuple[str, list[tuple[str, str]], Iterable[bytes]]:
    """Status, headers and body (its pieces) for a project page; the hot path in wsgi.py
    uses it too.

    Big pages go gzip-encoded to clients that take it (pip and uv do): the page of
    a project with thousands of files is megabytes as it is, a tenth of that encoded.
    """
    page = entry.page
    representation = page.representation(media_type)
    encoded = representation.length >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding)
    if encoded:
        representation = representation.gzipped()
    headers = [
        ("Content-Type", CONTENT_TYPES[media_type]),
        ("ETag", representation.etag),
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", _cache_control(entry, max_age)),
        *SIMPLE_SECURITY_HEADERS,
    ]
    if encoded:
        headers.append(("Content-Encoding", "gzip"))
    if page.serial is not None:
        headers.append(("X-PyPI-Last-Serial", str(page.serial)))
    if etag_matches(if_none_match, representation.etag):
        return "304 Not Modified", headers, []
    headers.append(("Content-Length", str(representation.length)))
    return "200 OK", headers, representation.pieces()


def _cache_control(entry: CachedPage, max_age: int) -> str:
    if entry.stale:
        return STALE_CACHE_CONTROL
    if entry.page.private:
        # A new upload must be visible at once: revalidate every time (a cheap 304).
        return "no-cache"
    if entry.until is not None:
        # Never kept past the moment a held file matures and the page shows it.
        max_age = max(0, min(max_age, int(entry.until - time.time())))
    return f"max-age={max_age}, public"


@view_config(route_name="simple_project", request_method=("GET", "HEAD"), permission=READ)
def project_page(request: Request) -> Response:
    return _project_page(request, request.services.index, MAIN)


@view_config(route_name="upstream_project", request_method=("GET", "HEAD"), permission=READ)
def upstream_project_page(request: Request) -> Response:
    """One upstream alone, through its cache: no private project shadows its names here."""
    return _project_page(request, upstream_source(request).index, None)


@view_config(route_name="index_project", request_method=("GET", "HEAD"), permission=READ)
def index_project_page(request: Request) -> Response:
    """A named index: its private projects shadow every base below them."""
    index = named_index(request)
    return _project_page(request, index, index.name)


@view_config(route_name="index_index", request_method=("GET", "HEAD"), permission=READ)
def index_project_list(request: Request) -> Response:
    return _project_list(request, request.services.project_list_of(named_index(request)))


def named_index(request: Request) -> Router:
    """The index the URL names; 404 when there is none of that name."""
    try:
        return request.services.indexes.view(request.matchdict["index"])
    except KeyError:
        raise HTTPNotFound("no index of that name") from None


@view_config(route_name="simple_index", request_method=("GET", "HEAD"), permission=READ)
def project_list(request: Request) -> Response:
    return _project_list(request, request.services.project_list)


@view_config(route_name="snapshot_project", request_method=("GET", "HEAD"), permission=READ)
def snapshot_project_page(request: Request) -> Response:
    """The index main as of the URL's time."""
    moment = snapshot_moment(request)
    return _project_page(request, request.services.index, MAIN, moment)


@view_config(route_name="index_snapshot_project", request_method=("GET", "HEAD"), permission=READ)
def index_snapshot_project_page(request: Request) -> Response:
    """A named index as of the URL's time."""
    moment = snapshot_moment(request)
    index = named_index(request)
    return _project_page(request, index, index.name, moment)


@view_config(route_name="snapshot_index", request_method=("GET", "HEAD"), permission=READ)
def snapshot_project_list(request: Request) -> Response:
    """The index's own list: a name whose files all came later has an empty page."""
    snapshot_moment(request)  # a 400 for a time that is none
    return _project_list(request, request.services.project_list)


@view_config(route_name="index_snapshot_index", request_method=("GET", "HEAD"), permission=READ)
def index_snapshot_project_list(request: Request) -> Response:
    snapshot_moment(request)
    return _project_list(request, request.services.project_list_of(named_index(request)))


def snapshot_moment(request: Request) -> datetime:
    """The moment the URL's snapshot time names, naive UTC; BadTime (400) says why not."""
    return request.services.snapshots.moment(request.matchdict["time"])


@view_config(route_name="upstream_index", request_method=("GET", "HEAD"), permission=READ)
def upstream_project_list(request: Request) -> Response:
    upstream_source(request)  # a 404 for a name that is no upstream's
    return _project_list(request, request.services.upstream_lists[request.matchdict["upstream"]])


def upstream_source(request: Request) -> Source:
    """The upstream the URL names; 404 when none is configured under that name."""
    try:
        return request.services.index.upstream(request.matchdict["upstream"])
    except KeyError:
        raise HTTPNotFound("no upstream of that name") from None


def _project_page(
    request: Request, pages: Pages, scope: str | None, moment: datetime | None = None
) -> Response:
    """``scope``: the index whose rules apply (None: one upstream alone, the defaults);
    ``moment``: a snapshot's time."""
    name = normalize_project(request.matchdict["project"])
    if name != request.matchdict["project"]:
        location = request.current_route_path(project=name)
        return HTTPMovedPermanently(location=location)
    media_type = select_media_type(request.headers.get("Accept"))
    if media_type is None:
        return HTTPNotAcceptable(body=NOT_ACCEPTABLE, content_type="text/plain", charset="utf-8")
    entry, result = pages.lookup_page(name)
    note_cache(request, "page", result)
    entry = request.services.guard.page(scope, name, entry)
    if moment is not None:
        entry = request.services.snapshots.page(scope, name, entry, moment)
    status, headers, body = page_response(
        entry,
        media_type,
        request.headers.get("If-None-Match"),
        request.services.settings.client_max_age,
        request.headers.get("Accept-Encoding"),
    )
    # A HEAD's body is closed unread: a big page kept encoded is never decompressed for it.
    return Response(status=status, headerlist=headers, app_iter=body)


def _project_list(request: Request, projects: ProjectList) -> Response:
    media_type = select_media_type(request.headers.get("Accept"))
    if media_type is None:
        return HTTPNotAcceptable(body=NOT_ACCEPTABLE, content_type="text/plain", charset="utf-8")
    encoded = accepts_gzip(request.headers.get("Accept-Encoding"))
    etag, serial, handle = projects.open(media_type == JSON_TYPE, encoded)
    headers = [
        ("Content-Type", CONTENT_TYPES[media_type]),
        ("ETag", etag),
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", f"max-age={request.services.settings.client_max_age}, public"),
        *SIMPLE_SECURITY_HEADERS,
    ]
    if encoded:
        headers.append(("Content-Encoding", "gzip"))
    if serial is not None:
        headers.append(("X-PyPI-Last-Serial", str(serial)))
    if etag_matches(request.headers.get("If-None-Match"), etag):
        handle.close()
        return Response(status=304, headerlist=headers)
    headers.append(("Content-Length", str(os.fstat(handle.fileno()).st_size)))
    wrapper = request.environ.get("wsgi.file_wrapper")
    app_iter = wrapper(handle, 65536) if wrapper else iter(lambda: handle.read(65536), b"")
    return Response(headerlist=headers, app_iter=app_iter)


@view_config(route_name="simple_index", require_csrf=False)
@view_config(route_name="simple_project", require_csrf=False)
@view_config(route_name="upstream_index", require_csrf=False)
@view_config(route_name="upstream_project", require_csrf=False)
@view_config(route_name="index_index", require_csrf=False)
@view_config(route_name="index_project", require_csrf=False)
@view_config(route_name="snapshot_index", require_csrf=False)
@view_config(route_name="snapshot_project", require_csrf=False)
@view_config(route_name="index_snapshot_index", require_csrf=False)
@view_config(route_name="index_snapshot_project", require_csrf=False)
def wrong_method(request: Request) -> Response:
    # uv and twine turn a 405 here into "you used the index URL instead of the upload URL".
    return HTTPMethodNotAllowed(headers={"Allow": "GET, HEAD"})
