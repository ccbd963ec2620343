"""The outermost WSGI callable: measurement, the hot path for fresh pages and their stored
files, and shutdown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyramid.events import NewResponse
from pyramid.router import Router

from pypicache.cache.files import METADATA_SUFFIX
from pypicache.cache.index import CachedPage
from pypicache.cache.indexes import MAIN
from pypicache.cache.rendering import PROVENANCE_SUFFIX
from pypicache.errors import NotAllowed
from pypicache.services import Services
from pypicache.web.negotiation import select_media_type
from pypicache.web.observe import CACHE_KEY, Observer
from pypicache.web.security import BasicAuthSecurityPolicy
from pypicache.web.views.files import download
from pypicache.web.views.simple import page_response

_PREFIX = "/simple/"
_FILES = "/packages/"


class PypicacheApp:
    """Serves a fresh, already rendered project page, and a file such a page lists,
    without entering Pyramid.

    pip and uv fetch one project page per dependency, again and again; the
    page is pre-rendered bytes in memory, so routing, tweens and the
    security policy would be most of the cost (of a stored file's too, a
    quarter of its time).  Everything else, including every miss, goes to
    the Pyramid app, which answers the same way through the same
    ``page_response`` and ``download``.
    """

    def __init__(self, app: Router, services: Services, policy: BasicAuthSecurityPolicy) -> None:
        self.app = app
        # Pyramid's request for this app (``request.services`` on it) and its registry,
        # for ``download`` and the exception views.
        self._request = app.request_factory
        self._registry = app.registry
        self.services = services
        self.policy = policy
        self._index = services.index
        self._indexes = services.indexes
        self._guard = services.guard
        self._client_max_age = services.settings.client_max_age
        self._observe = Observer(services.metrics)
        self._page_hit = services.metrics.cache_counter("page", "hit")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._observe(environ, start_response, self._serve)

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        found = None
        if path.endswith("/") and method in ("GET", "HEAD"):
            found = self._cached(path)
        if found is not None:
            entry, index, name = found
            media_type = select_media_type(environ.get("HTTP_ACCEPT"))
            if media_type is not None and self.policy.may_read(environ, index):
                try:
                    entry = self._guard.page(index, name, entry)
                except NotAllowed:
                    return self.app(environ, start_response)  # Pyramid says why
                status, headers, body = page_response(
                    entry,
                    media_type,
                    environ.get("HTTP_IF_NONE_MATCH"),
                    self._client_max_age,
                    environ.get("HTTP_ACCEPT_ENCODING"),
                )
                environ[CACHE_KEY] = "hit"
                self._page_hit()
                start_response(status, headers)
                return [] if method == "HEAD" else body
        elif path.startswith(_FILES) and method in ("GET", "HEAD"):
            answered = self._listed_file(environ, start_response, path)
            if answered is not None:
                return answered
        return self.app(environ, start_response)

    def _listed_file(
        self, environ: dict[str, Any], start_response: Callable[..., Any], path: str
    ) -> Iterable[bytes] | None:
        """A file (or its .metadata) of a page of the index main this process holds fresh,
        as the ``file`` route's view and Pyramid's exception views answer it; None leaves
        the request to Pyramid: a path that is not that route's, a reader the policy does
        not let in at once, or a file the page does not list.  Only normalized names are
        cache keys, as for pages, so any other project name goes to Pyramid too."""
        project, _, filename = path[len(_FILES) :].partition("/")
        if (
            not path.isascii()  # Pyramid decodes others as UTF-8: its route, its match
            or not filename
            or "/" in filename
            or filename.endswith(PROVENANCE_SUFFIX)
            or not self.policy.may_read(environ, MAIN)
        ):
            return None
        entry = self._index.cached_page(project)
        if entry is None or filename.removesuffix(METADATA_SUFFIX) not in entry.page.files:
            return None
        request = self._request(environ)
        request.registry = self._registry
        request.matchdict = {"project": project, "filename": filename}
        try:
            response = download(request)
        except Exception:
            # Held back by the rules, a miss whose fill failed, a database that refused:
            # answered by Pyramid's exception views, as its excview tween would, never
            # asked of Pyramid again (a second download of the file).
            response = request.invoke_exception_view(reraise=True)
        # As Pyramid's router does: its subscribers add the security headers.
        self._registry.notify(NewResponse(request, response))
        result: Iterable[bytes] = response(environ, start_response)
        return result

    def _cached(self, path: str) -> tuple[CachedPage, str | None, str] | None:
        """The fresh page a project page's path names, its index (None: one upstream
        alone) and the name: /simple/<name>/, or the same under /i/<index>/ or
        /u/<upstream>/.  Only normalized names are cache keys, so anything else (and
        every miss) goes to Pyramid."""
        if path.startswith(_PREFIX):
            name = path[len(_PREFIX) : -1]
            entry = self._index.cached_page(name)
            return (entry, MAIN, name) if entry is not None else None
        kind, _, rest = path[1:].partition("/")
        if kind not in ("i", "u"):
            return None
        where, _, rest = rest.partition("/")
        if not rest.startswith(_PREFIX[1:]):
            return None
        name = rest[len(_PREFIX) - 1 : -1]
        try:
            if kind == "i":
                entry = self._indexes.view(where).cached_page(name)
                return (entry, where, name) if entry is not None else None
            entry = self._index.upstream(where).index.cached_page(name)
            return (entry, None, name) if entry is not None else None
        except KeyError:
            return None

    def close(self) -> None:
        """Stop the background threads and downloads, release connections; serve no more."""
        self.services.close()
        self._observe.stop()
