"""The outermost WSGI callable: measurement, the hot path for fresh pages, and shutdown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pypicache.cache.index import IndexService
from pypicache.cache.retention import Evictor
from pypicache.db import Database
from pypicache.follower.follower import Follower
from pypicache.ops.history import History
from pypicache.ops.metrics import Metrics
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

    def __init__(
        self,
        app: WSGIApp,
        service: IndexService,
        follower: Follower | None,
        policy: BasicAuthSecurityPolicy,
        database: Database,
        client_max_age: int,
        metrics: Metrics,
        *,
        evictor: Evictor | None,
        history: History,
    ) -> None:
        self.app = app
        self.service = service
        self.follower = follower
        self.evictor = evictor
        self.history = history
        self.policy = policy
        self.database = database
        self.client_max_age = client_max_age
        self.metrics = metrics
        self._observe = Observer(metrics)
        self._page_hit = metrics.cache_counter("page", "hit")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._observe(environ, start_response, self._serve)

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        if path.startswith(_PREFIX) and path.endswith("/") and method in ("GET", "HEAD"):
            # Only normalized names are cache keys, so anything else falls through.
            entry = self.service.cached_page(path[len(_PREFIX) : -1])
            media_type = select_media_type(environ.get("HTTP_ACCEPT"))
            if entry is not None and media_type is not None and self.policy.may_read(environ):
                status, headers, body = page_response(
                    entry, media_type, environ.get("HTTP_IF_NONE_MATCH"), self.client_max_age
                )
                environ[CACHE_KEY] = "hit"
                self._page_hit()
                start_response(status, headers)
                return [] if method == "HEAD" else [body]
        return self.app(environ, start_response)

    def close(self) -> None:
        """Stop the background threads and downloads, release connections; serve no more."""
        if self.follower is not None:
            self.follower.stop()
        if self.evictor is not None:
            self.evictor.stop()
        self.history.stop()
        self.service.close()
        self._observe.stop()
        self.database.dispose()
