"""A file's PEP 740 provenance (``<file URL>.provenance``), as its page links to it."""

from __future__ import annotations

import hashlib

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.cache.indexes import MAIN
from pypicache.cache.router import Source
from pypicache.errors import FileNotFound
from pypicache.models import PRIVATE_PREFIX
from pypicache.names import normalize_project
from pypicache.web.httputil import etag_matches
from pypicache.web.security import READ
from pypicache.web.views.simple import named_index, upstream_source

# Provenance may gain attestations later (PEP 740): kept a while, not for good like files.
CACHE_CONTROL = "max-age=600, public"
CONTENT_TYPE = "application/json"


@view_config(route_name="file_provenance", request_method=("GET", "HEAD"), permission=READ)
def provenance(request: Request) -> Response:
    name = normalize_project(request.matchdict["project"])
    source = request.services.index.file_source(name, request.matchdict["filename"])
    return _provenance(request, source, name, MAIN)


@view_config(route_name="index_provenance", request_method=("GET", "HEAD"), permission=READ)
def index_provenance(request: Request) -> Response:
    name = normalize_project(request.matchdict["project"])
    index = named_index(request)
    return _provenance(
        request, index.file_source(name, request.matchdict["filename"]), name, index.name
    )


@view_config(route_name="upstream_provenance", request_method=("GET", "HEAD"), permission=READ)
def upstream_provenance(request: Request) -> Response:
    source = upstream_source(request)
    return _provenance(request, source, normalize_project(request.matchdict["project"]), None)


def _provenance(request: Request, source: Source, name: str, scope: str | None) -> Response:
    """``scope``: the index whose rules apply (None: one upstream alone, the defaults)."""
    filename = request.matchdict["filename"]
    facts = source.index.project_page(name).page.files.get(filename)
    if facts is None:
        raise FileNotFound(f"{name} has no file {filename}")
    private = source.name.startswith(PRIVATE_PREFIX)
    request.services.guard.admit(scope, name, facts, private=private)
    body = request.services.provenance.document(source.name, source.index, name, facts)
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    headers = [
        ("Content-Type", CONTENT_TYPE),
        ("ETag", etag),
        ("Cache-Control", CACHE_CONTROL),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return Response(status=304, headerlist=headers)
    return Response(status=200, headerlist=headers, body=body)
