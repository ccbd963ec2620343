"""The outermost WSGI callable: measurement, the hot path for fresh pages, and shutdown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pypicache.cache.index import CachedPage
from pypicache.cache.indexes import MAIN
from pypicache.errors import NotAllowed
from pypicache.services import Services
from pypicache.web.negotiation import select_media_type
from pypicache.web.observe import CACHE_KEY, Observer
from pypicache.web.security import BasicAuthSecurityPolicy
from pypicache.web.views.simple import page_response

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_PREFIX = "/simple/"


class PypicacheApp:
    """Serves a fresh, already rendered project page without entering Pyramid.

    pip and uv fetch one project page per dependency, again and again; the
    page is pre-rendered bytes in memory, so routing, tweens and the
    security policy would be most of the cost.  Everything else,
    including every miss, goes to the Pyramid app, which answers the same
    way through the same ``page_response``.
    """

    def __init__(self, app: WSGIApp, services: Services, policy: BasicAuthSecurityPolicy) -> None:
        self.app = app
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
        return self.app(environ, start_response)

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
