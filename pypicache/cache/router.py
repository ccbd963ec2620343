"""The sources of a name: the private projects first, then the upstream its route names,
or the first upstream in priority order that has it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TypeVar, Union

from pypicache.cache.files import METADATA_SUFFIX, FileCache
from pypicache.cache.fill import FillRegistry
from pypicache.cache.index import CachedPage, IndexService
from pypicache.cache.pagecache import PageCache
from pypicache.cache.rendering import PageData, RenderedPage
from pypicache.errors import FileNotFound, NotPrivate, ProjectNotFound
from pypicache.filefacts import FileFacts
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.routing import Route, route_for

T = TypeVar("T")
# How bad a lookup was, of the parts of a merged page: the worst one is the page's.
_WORSE = {"hit": 0, "miss": 1, "stale": 2}


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


@dataclass(frozen=True)
class _Merged:
    """A merged page and the parts it was made of (it serves while they do)."""

    parts: tuple[CachedPage, ...]
    entry: CachedPage

    @property
    def page(self) -> RenderedPage:
        return self.entry.page


Base = Union[Source, "Router"]


class Router:
    """An index: decides which source answers for a name; each source keeps its own pages.

    Its private projects come first; then its bases in order: upstreams and other
    indexes (whose own private projects and bases come in their turn).  A routed
    name comes from its upstream alone: missing there, it is missing.  An unrouted
    name comes from the first base that has it; only "no such project" moves on to
    the next one.  A base that fails fails the request (or serves its stale copy),
    so an outage never switches a name to another source.
    """

    def __init__(
        self,
        private: Source,
        bases: Sequence[Base],
        routes: Sequence[Route],
        merge: Sequence[str] = (),
        merge_cache_bytes: int = 0,
        name: str = "main",
    ):
        """``merge``: patterns of the unrouted names whose files come from every upstream;
        their merged pages take at most ``merge_cache_bytes`` of memory."""
        self.name = name
        self.private = private
        self.bases = tuple(bases)
        self.upstreams = tuple(base for base in self.bases if isinstance(base, Source))
        self._by_name = {source.name: source for source in self.upstreams}
        self._routes = tuple(routes)
        self._merge = tuple(merge)
        self._merged: PageCache[_Merged] = PageCache(merge_cache_bytes)

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

    @property
    def upstream_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def reachable(self, project: str | None) -> tuple[list[Router], list[Source]]:
        """The indexes below this one and the upstreams that may answer for ``project``
        (None: for any name) through its bases, each once, in the order they are asked."""
        views: list[Router] = []
        upstreams: list[Source] = []
        for base in self.bases if project is None else self._chain(project):
            if isinstance(base, Router):
                if base not in views:
                    views.append(base)
                    below, more = base.reachable(project)
                    views.extend(v for v in below if v not in views)
                    upstreams.extend(u for u in more if u not in upstreams)
            elif base not in upstreams:
                upstreams.append(base)
        return views, upstreams

    def candidates(self, project: str) -> tuple[Source, ...]:
        """The upstreams among the bases that may answer for ``project``, in order."""
        return tuple(base for base in self._chain(project) if isinstance(base, Source))

    def _chain(self, project: str) -> tuple[Base, ...]:
        """The bases asked for ``project``, in order: a routed name skips every upstream
        but its own (another index applies the routes itself)."""
        routed = route_for(self._routes, project)
        if routed is None:
            return self.bases
        return tuple(b for b in self.bases if not isinstance(b, Source) or b.name == routed)

    def known_missing(self, name: str) -> bool:
        """Whether this process knows, without asking anyone, that no base has ``name``."""
        if not self.private.index.known_missing(name):
            return False
        return all(_known_missing(base, name) for base in self._chain(name))

    def merges(self, project: str) -> bool:
        """Whether the page of ``project`` holds the files of every upstream that has it."""
        return (
            len(self.upstreams) > 1
            and route_for(self._routes, project) is None
            and any(fnmatchcase(project, pattern) for pattern in self._merge)
        )

    def answering(self, project: str, holds: Callable[[str], bool]) -> tuple[str, ...]:
        """The sources whose stored page of ``project`` this index serves, told by
        ``holds(source)`` (whether the database has that source's page of it) instead of
        asking anyone: the same shadowing, routes and merging as ``lookup_page``."""
        if not holds(self.private.name) and self.merges(project):
            return tuple(source.name for source in self.upstreams if holds(source.name))
        return self._answering_first(project, holds)

    def _answering_first(self, project: str, holds: Callable[[str], bool]) -> tuple[str, ...]:
        if holds(self.private.name):
            return (self.private.name,)
        for base in self._chain(project):
            if isinstance(base, Router):
                found = base._answering_first(project, holds)
                if found:
                    return found
            elif holds(base.name):
                return (base.name,)
        return ()

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
        if self.merges(name):
            return self._cached_merge(name)
        for base in self._chain(name):
            if isinstance(base, Router):
                entry = base.cached_page(name)
            else:
                entry = base.index.cached_page(name)
            if entry is not None or not _known_missing(base, name):
                return entry
        return None

    def lookup_page(self, name: str) -> tuple[CachedPage, str]:
        """The page, and whether it took an upstream: "hit", "miss" or "stale"."""
        if self.merges(name):
            try:
                return self.private.index.lookup_page(name)
            except NotPrivate:
                return self._merge_of(name, lambda index: index.lookup_page(name))
        return self._first(name, lambda index: index.lookup_page(name))[1]

    def project_page(self, name: str) -> CachedPage:
        """The page, its rows written (what a download of one of its files needs)."""
        if self.merges(name):
            try:
                return self.private.index.project_page(name)
            except NotPrivate:
                return self._merge_of(name, lambda index: (index.project_page(name), "hit"))[0]
        return self._first(name, lambda index: index.project_page(name))[1]

    def file_source(self, project: str, filename: str) -> Source:
        """The source whose page lists ``filename`` (or the file of a ``.metadata``) as
        served: of a merged page, the first upstream in priority order that lists it."""
        if not self.merges(project):
            return self.source_of(project)
        try:
            self.private.index.project_page(project)
            return self.private
        except NotPrivate:
            pass
        wanted = filename.removesuffix(METADATA_SUFFIX)
        for source in self.upstreams:
            try:
                page = source.index.project_page(project).page
            except ProjectNotFound:
                continue
            if wanted in page.files:
                return source
        raise FileNotFound(f"{project} has no file {filename}")

    def source_of(self, name: str) -> Source:
        """The source whose page of ``name`` is served; ProjectNotFound when none has it."""
        return self._first(name, lambda index: index.project_page(name))[0]

    def _merge_of(
        self, name: str, look: Callable[[IndexService], tuple[CachedPage, str]]
    ) -> tuple[CachedPage, str]:
        """The page of every upstream that has ``name``, as one; an upstream that fails
        fails it (or serves its stale part), as for a page of one upstream."""
        parts: list[CachedPage] = []
        how = "hit"
        for source in self.upstreams:
            try:
                entry, result = look(source.index)
            except ProjectNotFound:
                continue
            parts.append(entry)
            how = max(how, result, key=_WORSE.__getitem__)
        if not parts:
            raise ProjectNotFound(name)
        return self._combine(name, tuple(parts)), how

    def _cached_merge(self, name: str) -> CachedPage | None:
        parts = []
        for source in self.upstreams:
            entry = source.index.cached_page(name)
            if entry is not None:
                parts.append(entry)
            elif not source.index.known_missing(name):
                return None
        if not parts:
            return None
        return self._combine(name, tuple(parts))

    def _combine(self, name: str, parts: tuple[CachedPage, ...]) -> CachedPage:
        """One page of the parts' files; of a filename in several, the first part's."""
        kept = self._merged.get(name)
        if kept is not None and _same(kept.parts, parts):
            return kept.entry
        files: dict[str, FileFacts] = {}
        versions: set[str] = set()
        for part in parts:
            data = part.page.data
            versions.update(data.versions)
            for facts in data.files:
                files.setdefault(facts.filename, facts)
        first = parts[0].page.data
        page = RenderedPage(
            PageData(
                name=name,
                display_name=first.display_name,
                serial=max((part.page.serial or 0 for part in parts), default=0) or None,
                versions=sorted(versions),
                files=list(files.values()),
            )
        )
        entry = CachedPage(
            page,
            fresh_until=min(part.fresh_until for part in parts),
            stale=any(part.stale for part in parts),
        )
        self._merged.put(name, _Merged(parts, entry))
        return entry

    def _first(self, name: str, look: Callable[[IndexService], T]) -> tuple[Source, T]:
        try:
            return self.private, look(self.private.index)
        except NotPrivate:
            pass
        chain = self._chain(name)
        for position, base in enumerate(chain):
            try:
                if isinstance(base, Router):
                    return base._first(name, look)
                return base, look(base.index)
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
        self._merged.pop(name)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()


def _known_missing(base: Base, name: str) -> bool:
    if isinstance(base, Router):
        return base.known_missing(name)
    return base.index.known_missing(name)


def _same(kept: tuple[CachedPage, ...], parts: tuple[CachedPage, ...]) -> bool:
    """Whether a merged page was made of exactly these entries (none was revalidated since)."""
    return len(kept) == len(parts) and all(a is b for a, b in zip(kept, parts, strict=True))
