"""The sources of a name: the private projects first, then the upstream its route names,
or the first upstream in priority order that has it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pypicache.cache.files import FileCache
from pypicache.cache.fill import FillRegistry
from pypicache.cache.index import CachedPage, IndexService
from pypicache.errors import NotPrivate, ProjectNotFound
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.routing import Route, route_for

T = TypeVar("T")


@dataclass(frozen=True)
class Source:
    """Pages and files of one source: an upstream (by its name), or the private projects."""

    name: str
    index: IndexService
    files: FileCache
    fills: FillRegistry

    def stop(self) -> None:
        self.index.stop()
        self.fills.stop()


class Router:
    """Decides which source answers for a name; each source keeps its own pages.

    A routed name comes from its upstream alone: missing there, it is missing.  An
    unrouted name comes from the first upstream that has it; only "no such project"
    moves on to the next one.  An upstream that fails fails the request (or serves
    its stale copy), so an outage never switches a name to another source.
    """

    def __init__(self, private: Source, upstreams: Sequence[Source], routes: Sequence[Route]):
        self.private = private
        self.upstreams = tuple(upstreams)
        self._by_name = {source.name: source for source in self.upstreams}
        self._routes = tuple(routes)

    @property
    def sources(self) -> tuple[Source, ...]:
        return (self.private, *self.upstreams)

    @property
    def follows_upstream(self) -> bool:
        """Whether any page is fetched from an upstream (the admin pages say so)."""
        return any(source.index.follows_upstream for source in self.upstreams)

    def upstream(self, name: str) -> Source:
        """The upstream named ``name`` (KeyError when none is)."""
        return self._by_name[name]

    def candidates(self, project: str) -> tuple[Source, ...]:
        """The upstreams that may answer for ``project``, in the order they are asked."""
        routed = route_for(self._routes, project)
        return (self._by_name[routed],) if routed is not None else self.upstreams

    def merge_from(self, project: str) -> UpstreamClient | None:
        """The upstream a private project merges when an admin allows it: its routed one,
        else the first."""
        return self.candidates(project)[0].index.upstream

    # -- pages -----------------------------------------------------------------------------

    def cached_page(self, name: str) -> CachedPage | None:
        """The page this process may serve at once, without asking anyone (the hot path)."""
        entry = self.private.index.cached_page(name)
        if entry is not None:
            return entry
        if not self.private.index.known_missing(name):
            return None
        for source in self.candidates(name):
            entry = source.index.cached_page(name)
            if entry is not None or not source.index.known_missing(name):
                return entry
        return None

    def lookup_page(self, name: str) -> tuple[CachedPage, str]:
        """The page, and whether it took an upstream: "hit", "miss" or "stale"."""
        return self._first(name, lambda index: index.lookup_page(name))[1]

    def project_page(self, name: str) -> CachedPage:
        """The page, its rows written (what a download of one of its files needs)."""
        return self._first(name, lambda index: index.project_page(name))[1]

    def source_of(self, name: str) -> Source:
        """The source whose page of ``name`` is served; ProjectNotFound when none has it."""
        return self._first(name, lambda index: index.project_page(name))[0]

    def _first(self, name: str, look: Callable[[IndexService], T]) -> tuple[Source, T]:
        try:
            return self.private, look(self.private.index)
        except NotPrivate:
            pass
        chain = self.candidates(name)
        for position, source in enumerate(chain):
            try:
                return source, look(source.index)
            except ProjectNotFound:
                if position == len(chain) - 1:
                    raise
        raise ProjectNotFound(name)

    def refresh_now(self, name: str, *, actor: str) -> str:
        """Fetch the page of the source that serves ``name`` again (the admin's "refresh")."""
        return self.source_of(name).index.refresh_now(name, actor=actor)

    def purge(self, name: str, *, actor: str) -> int:
        """Drop the cached blobs of the served page's upstream files (the admin's "purge")."""
        return self.source_of(name).index.purge(name, actor=actor)

    def forget(self, name: str) -> None:
        """Drop what this process remembers of ``name`` in every source (an upload, an
        admin's change)."""
        for source in self.sources:
            source.index.forget(name)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
