"""The index service: what a project page holds, and when to ask the upstream for it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pypicache.cache.blobs import Blobs
from pypicache.cache.changes import name_serial
from pypicache.cache.claims import FillClaims, database_guard
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.pagecache import PageCache
from pypicache.cache.pagestore import (
    QUARANTINED,
    StoredFile,
    age_of,
    alarm_invalid_page,
    apply_page,
    apply_page_over,
    first_page,
    load_page_row,
    older,
    project_removed_after,
    remove_project,
    snapshot,
    stored_files,
    stored_page,
    uncache_files,
    withdraw_files,
)
from pypicache.cache.quarantine import Removal
from pypicache.cache.rendering import RenderedPage
from pypicache.db import Database
from pypicache.errors import (
    DatabaseUnavailable,
    NotPrivate,
    ProjectNotFound,
    UpstreamUnavailable,
)
from pypicache.filefacts import FileFacts
from pypicache.models import PRIVATE_PREFIX, AuditEntry, Project, utcnow
from pypicache.settings import Settings
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.entries import InvalidPage, NotModified, UpstreamPage, page_problem

log = logging.getLogger(__name__)

# Seconds a process serves a private page from memory before re-reading the database.
PRIVATE_REFRESH = 2.0
# The claim on fetching a project's page ("project/filename" claims are files').
PAGE_CLAIM = "page:"
# A project's first page with this many files is written to the database after it is
# served: its rows take longer to write than the page takes to fetch and check.
WRITE_AFTER_FILES = 1_000
# Threads writing such pages; each write holds its page's claim until it committed.
PAGE_WRITERS = 2
# Seconds such a write waits for the page's first rendering, so that the request that
# fetched it renders and encodes it without a writer taking turns with it for the CPU.
RENDER_FIRST = 0.5


class Refresh(Enum):
    """What a changelog-triggered refetch achieved."""

    UPDATED = "updated"  # stored (or removed) at the required serial or later
    CURRENT = "current"  # already at that serial: nothing to do
    STALE = "stale"  # the upstream still answers with an older page
    NOT_CACHED = "not-cached"  # nobody asked for the project: it costs nothing


@dataclass(frozen=True)
class CachedPage:
    """A rendered page and how long this process may serve it without asking anyone."""

    page: RenderedPage
    fresh_until: float  # time.monotonic()
    stale: bool  # served because the upstream failed; clients must not cache it
    # A first page served while its rows are written: done once they are committed.
    written: Future[None] | None = None
    # When what this page shows changes by itself (a held file matures), time.time();
    # clients must not keep it longer.
    until: float | None = None
    # The serial the database gave the page's name when the page was read from it or
    # written to it: while the database still says so, the page is what it holds
    # (every change under a name takes a new serial), and a revalidation need not read
    # its files again.  None: not known.
    as_of: int | None = None


class IndexService:
    """The page cache of one source: project pages from memory, the database, or the
    upstream, in that order.

    A source is one upstream (its rows, fetched from it), or an index's private
    projects (``@<index>``), whose pages merge in an upstream's only where an admin
    allows it (``merge_from`` says which upstream that is for a name).  Shared by
    every process through the database: one of them fetches a page the others miss
    at the same moment (a page claim), and all serve what it stored.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        source: str,
        upstream: UpstreamClient | None,
        locks: KeyedLocks,
        claims: FillClaims,
        blobs: Blobs,
        merge_from: Callable[[str], UpstreamClient | None] | None = None,
    ) -> None:
        self.source = source
        self.private = source.startswith(PRIVATE_PREFIX)
        self._settings = settings
        self._database = database
        self._upstream = upstream
        self._merge_from = merge_from
        self._locks = locks
        self._claims = claims
        self._blobs = blobs
        # Bounded in bytes: an evicted page is read from the database again.
        self._pages: PageCache[CachedPage] = PageCache(settings.page_cache_bytes)
        self._missing: dict[str, float] = {}  # upstream said 404: name -> until (monotonic)
        self._wait_timeout = settings.upstream_wait
        self._stop = threading.Event()
        self._writers = ThreadPoolExecutor(PAGE_WRITERS, thread_name_prefix="page-writer")
        # The writes of big first pages already served, by project: each holds the page
        # claim until its rows are committed, and what needs those rows waits for it.
        self._writing: dict[str, Future[None]] = {}
        # A private source's names (``_private_names``), and when they were read.
        self._names: frozenset[str] = frozenset()
        self._names_read_at = float("-inf")

    @property
    def follows_upstream(self) -> bool:
        """Whether pages are fetched from an upstream at all (the admin pages say so)."""
        return self._upstream is not None

    @property
    def upstream(self) -> UpstreamClient | None:
        """The upstream this source's pages come from (None for the private projects)."""
        return self._upstream

    def client_for(self, name: str) -> UpstreamClient | None:
        """Where the page of ``name`` (and what it links to) is fetched: this source's
        upstream, or the one a private project merges."""
        if self._merge_from is not None:
            return self._merge_from(name)
        return self._upstream

    def _key(self, name: str) -> str:
        """The lock and claim key of a name: private pages share uploads' locks."""
        return name if self.private else f"{self.source}/{name}"

    def stop(self) -> None:
        """Stop waiting for other processes' page fetches (the server is stopping), and
        finish writing the pages already served."""
        self._stop.set()
        self._writers.shutdown(wait=True)

    # -- project pages ---------------------------------------------------------------------

    def cached_page(self, name: str) -> CachedPage | None:
        """The page if this process may serve it right now without a database or upstream trip."""
        entry = self._pages.get(name)
        if entry is not None and entry.fresh_until > time.monotonic():
            return entry
        return None

    def known_missing(self, name: str) -> bool:
        """Whether this process knows, without asking anyone, that the source has no ``name``."""
        return self._missing.get(name, 0) > time.monotonic()

    def project_page(self, name: str) -> CachedPage:
        """The page for normalized ``name``, revalidated with the upstream when it is due.

        A first page still being written is waited for: a download of one of its files
        records itself in the file's row.
        """
        entry = self.lookup_page(name)[0]
        written = entry.written
        if written is None:
            return entry
        try:
            written.result(timeout=self._wait_timeout)
        except FutureTimeout as exc:
            raise DatabaseUnavailable(f"the page of {name} is still being stored") from exc
        except Exception:
            self._drop_pending(name, written)
            return self.lookup_page(name)[0]  # not stored after all: fetched again
        return entry

    def lookup_page(self, name: str) -> tuple[CachedPage, str]:
        """The page, and whether it took the upstream: "hit", "miss" or "stale"."""
        entry = self.cached_page(name)
        if entry is not None:
            return entry, "stale" if entry.stale else "hit"
        if self.private and (self.known_missing(name) or name not in self._private_names()):
            self._missing[name] = time.monotonic() + min(self._settings.page_ttl, PRIVATE_REFRESH)
            raise NotPrivate(name)
        with self._locks.hold(self._key(name)):
            entry = self.cached_page(name)
            if entry is not None:  # another request just loaded it
                return entry, "stale" if entry.stale else "hit"
            return self._load(name)

    def refresh_now(self, name: str, *, actor: str) -> str:
        """Fetch a page from the upstream now, whatever its age (the admin page's "refresh").

        Unconditional, so a wrong page stored behind a matching ETag is replaced too.
        Returns "miss" when the upstream answered, "stale" when it failed and the
        stored page stays, "hit" when the project does not follow the upstream.
        """
        with self._locks.hold(self._key(name)):
            self.forget(name)
            result = self._load(name, force=True)[1]
        with self._database.unit_of_work() as db:
            db.add(AuditEntry(at=utcnow(), action="refresh", project=name, actor=actor))
        return result

    def purge(self, name: str, *, actor: str) -> int:
        """Delete the stored blobs of a project's cached upstream files; returns how many.

        The files stay listed on the page: the next download fetches them again.
        Private files are never purged, nothing could bring them back.
        """
        with self._locks.hold(self._key(name)):
            with self._database.unit_of_work() as db:
                count, candidates = uncache_files(db, self.source, name, actor)
            # A blob another project's cached file or a private file uses stays.
            self._blobs.drop_uncached(candidates)
        log.info("%s purged %d cached files of %s", actor, count, name)
        return count

    def _load(self, name: str, *, force: bool = False) -> tuple[CachedPage, str]:
        """The page from the database, or fetched; bounded even when the database fails.

        DatabaseUnavailable as soon as the database refuses a read or a claim,
        and past the wait deadline this process fetches the page itself.
        """
        deadline = time.monotonic() + self._wait_timeout
        self._await_write(name, deadline)
        while True:
            with database_guard(f"reading the page of {name}"):
                stored = self._from_database(name, force)
            if isinstance(stored, CachedPage):
                return stored, "hit"
            # Forced refreshes are an admin's; they never wait for another process.
            if force or time.monotonic() > deadline:
                break
            if self._claim_page(name, deadline):
                # Whoever held the claim may have stored the page meanwhile: its ETag then
                # makes our fetch a revalidation.
                try:
                    with database_guard(f"reading the page of {name}"):
                        stored = self._from_database(name, force)
                except BaseException:
                    self._claims.release(PAGE_CLAIM + self._key(name))
                    raise
                if isinstance(stored, CachedPage):
                    self._claims.release(PAGE_CLAIM + self._key(name))
                    return stored, "hit"
                break
        claim = None if force else PAGE_CLAIM + self._key(name)
        try:
            entry, how = self._fetch(name, stored, write_later=not force, claim=claim)
        except BaseException:
            if claim is not None:
                self._claims.release(claim)
            raise
        if claim is not None and entry.written is None:
            # Storing the answer ended it already, unless there was none to store; a big
            # first page's writer ends it once it committed.
            self._claims.release(claim)
        return entry, how

    def _from_database(self, name: str, force: bool) -> CachedPage | str | None:
        """The stored page when it may be served as it is; else the ETag a fetch sends."""
        with self._database.unit_of_work() as db:
            project = load_page_row(db, self.source, name)
            if project is not None:
                if project.private and not project.merge_upstream:
                    # Shadowing: the upstream is never asked about a private name.  Re-read
                    # often: an upload or a yank in another process must show quickly.
                    ttl = min(self._settings.page_ttl, PRIVATE_REFRESH)
                    return self._remember(db, project, ttl)
                age = age_of(project)
                if self.client_for(name) is None or (age < self._settings.page_ttl and not force):
                    return self._remember(db, project, self._settings.page_ttl - age)
            elif self.private:
                # Not a private name (yet): whoever routes it asks an upstream.  Known for
                # as long as a private page is served unread, so an upload shows as quickly.
                until = time.monotonic() + min(self._settings.page_ttl, PRIVATE_REFRESH)
                self._missing[name] = until
                raise NotPrivate(name)
            elif self._upstream is None:
                raise ProjectNotFound(name)
            if not self.private and self._missing.get(name, 0) > time.monotonic():
                raise ProjectNotFound(name)
            return project.upstream_etag if project is not None and not force else None

    def _claim_page(self, name: str, deadline: float) -> bool:
        """Claim fetching the page; False when another process fetched it meanwhile.

        Hosts missing the same page at once (a fleet's first install) ask the
        upstream once: the others wait for the claim to end, then read the page
        the winner stored.  Past ``deadline`` (monotonic) a waiter asks the
        upstream itself; a database that refuses the claim ends it at once.
        """
        key = PAGE_CLAIM + self._key(name)
        waited = False
        while True:
            if self._claims.try_claim(key):
                return True  # the caller looks at the database again before fetching
            if not waited:
                log.info("another process is fetching the page of %s; waiting for it", name)
                waited = True
            if not self._claims.wait_while_held(key, deadline, self._stop):
                return True
            if self._checked_recently(name):
                return False
            if time.monotonic() > deadline:
                return True

    def _checked_recently(self, name: str) -> bool:
        with database_guard(f"reading the page of {name}"), self._database.unit_of_work() as db:
            checked = db.scalar(
                select(Project.checked_at).where(
                    Project.source == self.source, Project.name == name
                )
            )
        return (
            checked is not None and (utcnow() - checked).total_seconds() < self._settings.page_ttl
        )

    def _fetch(
        self, name: str, etag: str | None, *, write_later: bool = False, claim: str | None = None
    ) -> tuple[CachedPage, str]:
        try:
            result = self._fetch_page(name, etag)
        except ProjectNotFound:
            self._forget_project(name)
            if self.private:
                return self._private_alone(name), "miss"
            raise
        except UpstreamUnavailable as exc:
            return self._stale(name, exc), "stale"
        try:
            return self._store(name, result, write_later=write_later, claim=claim), "miss"
        except InvalidPage as exc:  # a 200 that would have emptied the stored page
            return self._stale(name, exc), "stale"

    def _private_alone(self, name: str) -> CachedPage:
        """A private project whose merged upstream has no such project: its own files."""
        with self._database.unit_of_work() as db:
            project = load_page_row(db, self.source, name)
            if project is None:
                raise NotPrivate(name)  # deleted meanwhile
            return self._remember(db, project, min(self._settings.page_ttl, PRIVATE_REFRESH))

    def _fallback(self, name: str) -> RenderedPage | None:
        """The page to serve stale: this process's copy, else the database's."""
        entry = self._pages.get(name)
        if entry is not None:
            return entry.page
        with database_guard(f"reading the page of {name}"), self._database.unit_of_work() as db:
            project = load_page_row(db, self.source, name)
            return stored_page(db, project) if project is not None else None

    def _stale(self, name: str, exc: UpstreamUnavailable) -> CachedPage:
        """The stored page, served stale because the upstream failed (or re-raise)."""
        fallback = self._fallback(name)
        if fallback is None:
            log.warning("upstream failed for uncached %s: %s", name, exc)
            raise exc
        log.warning("upstream failed, serving stale %s: %s", name, exc)
        return self._keep(fallback, self._settings.error_retry_interval, stale=True)

    def _fetch_page(
        self, name: str, etag: str | None, cache_buster: str | None = None
    ) -> UpstreamPage | NotModified:
        """The upstream's answer; an invalid page of a stored project raises an alarm."""
        upstream = self.client_for(name)
        assert upstream is not None
        try:
            return upstream.fetch_project(
                name, etag, cache_buster, max_bytes=self._settings.max_page_bytes
            )
        except InvalidPage as exc:
            with self._database.unit_of_work() as db:
                if load_page_row(db, self.source, name) is not None:
                    alarm_invalid_page(db, name, str(exc))
            raise

    def _store(
        self,
        name: str,
        result: UpstreamPage | NotModified,
        *,
        write_later: bool = False,
        claim: str | None = None,
    ) -> CachedPage:
        """Record what the upstream answered; drop blobs nothing refers to any more.

        The page ``claim`` this process holds ends in the same transaction.  With
        ``write_later`` (the claim is handed over), a big first page is served at
        once and written in the background.
        """
        if isinstance(result, UpstreamPage):
            result = result.seen_at(utcnow())
        try:
            return self._store_once(name, result, write_later, claim)
        except IntegrityError:
            # Another process stored the project's first page (or a new file of it) at the
            # same moment; ours applies cleanly on top of what it committed.
            log.info("%s was stored concurrently by another process; applying again", name)
            return self._store_once(name, result, claim=claim)

    def _store_once(
        self,
        name: str,
        result: UpstreamPage | NotModified,
        write_later: bool = False,
        claim: str | None = None,
    ) -> CachedPage:
        try:
            with self._database.unit_of_work() as db:
                project = load_page_row(db, self.source, name)
                if project is None and isinstance(result, UpstreamPage):
                    removed_at = project_removed_after(db, name, result.serial)
                    if removed_at is not None:
                        raise InvalidPage(
                            f"the upstream's page of {name} (serial {result.serial}) is older"
                            f" than the project's removal at serial {removed_at}"
                        )
                if (
                    project is None
                    and write_later
                    and isinstance(result, UpstreamPage)
                    and len(result.files) >= WRITE_AFTER_FILES
                ):
                    pending = self._write_later(name, result)
                    if pending is not None:
                        return pending
                entry, problem, removed = self._record(db, name, project, result)
                if claim is not None:
                    self._claims.release_in(db, claim)
        except BaseException:
            # A page kept while storing may say what was never committed (and its serial
            # be given again to another change): read again next time.
            self._pages.pop(name)
            raise
        if problem is not None:
            raise InvalidPage(f"invalid upstream page for {name}: {problem}")
        self._blobs.set_aside(removed)
        return entry

    def _record(
        self, db: Session, name: str, project: Project | None, result: UpstreamPage | NotModified
    ) -> tuple[CachedPage, None, list[Removal]] | tuple[None, str, list[Removal]]:
        """The page that serves now and the files the upstream took back, or the problem
        that keeps the upstream's answer out (an alarm is raised, the stored page stays)."""
        if isinstance(result, NotModified):
            if project is None:  # vanished meanwhile; ask again next time
                raise ProjectNotFound(name)
            project.checked_at = utcnow()
            if result.serial is not None and result.serial > (project.last_serial or 0):
                project.last_serial = result.serial
            return self._remember(db, project, self._settings.page_ttl), None, []
        if project is not None and older(result.serial, project.last_serial):
            log.warning(
                "upstream sent %s at serial %s, older than our %s; keeping ours",
                name,
                result.serial,
                project.last_serial,
            )
            return self._remember(db, project, self._settings.error_retry_interval), None, []
        known = self._known_files(db, project) if project is not None else None
        if known is not None and result.status != QUARANTINED:
            stored: list[StoredFile] = []
            upstream = list(known)
        else:
            known = None
            stored = stored_files(db, project.id) if project is not None else []
            upstream = [s.facts.filename for s in stored if s.origin == "upstream"]
        if project is not None:
            problem = page_problem(name, result, upstream, project.last_serial)
            if problem is not None:
                alarm_invalid_page(db, name, problem)  # committed; the page stays as it is
                return None, problem, []
        if project is None:
            project = Project(source=self.source, name=name, display_name=name, versions=[])
            db.add(project)
            db.flush()  # its id, for the files' rows
        if known is not None:
            listed, removed = apply_page_over(db, project, known, result)
        else:
            listed, removed = apply_page(db, project, stored, result)
        page = snapshot(db, project, listed)
        entry = self._keep(page, self._settings.page_ttl, stale=False, as_of=page.serial)
        return entry, None, removed

    def _known_files(self, db: Session, project: Project) -> Mapping[str, FileFacts] | None:
        """The files of the page this process holds, while the database holds that page
        (its name's serial unchanged): a refresh then reads only the rows that differ.

        None for a private project, whose own files the page does not tell apart.
        """
        if project.private:
            return None
        kept = self._current(project.name, name_serial(db, project.name))
        return kept.page.files if kept is not None and not kept.page.private else None

    def _current(self, name: str, serial: int | None) -> CachedPage | None:
        """The page in memory when it is what the database holds: its name's ``serial``
        is still the one it was read or written at."""
        kept = self._pages.get(name)
        if serial is None or kept is None or kept.stale or kept.as_of != serial:
            return None
        return kept

    def _write_later(self, name: str, page: UpstreamPage) -> CachedPage | None:
        """Keep the first page ``page`` to serve now; a writer stores it (None: stopping)."""
        written: Future[None] = Future()
        ttl = self._settings.page_ttl
        entry = self._keep(first_page(name, page), ttl, stale=False, written=written)
        self._writing[name] = written
        try:
            self._writers.submit(self._write_first, name, page, written)
        except RuntimeError:  # the server is stopping: the caller writes it itself
            self._drop_pending(name, written)
            del self._writing[name]
            return None
        return entry

    def _write_first(self, name: str, page: UpstreamPage, written: Future[None]) -> None:
        """Store a first page already served, then end the page claim its fetch took.

        Without the project's lock: whoever holds it and needs the rows waits for this
        write (``_await_write``), and a store that does not (an admin's refresh) meets
        an IntegrityError that makes one of the two apply again on top of the other.
        """
        failure: Exception | None = None
        entry = self._pages.get(name)
        if entry is not None and entry.written is written:
            entry.page.wait_rendered(RENDER_FIRST)
        try:
            self._store(name, page, claim=PAGE_CLAIM + self._key(name))
        except Exception as exc:
            log.warning(
                "storing the first page of %s failed; fetched again next time: %s", name, exc
            )
            failure = exc
            self._drop_pending(name, written)
        finally:
            self._claims.release(PAGE_CLAIM + self._key(name))  # unless storing the page ended it
            self._writing.pop(name, None)
        # Last: whoever waits on it finds the claim ended and the rows in the database.
        if failure is None:
            written.set_result(None)
        else:
            written.set_exception(failure)

    def _await_write(self, name: str, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for the rows of a first page being written.

        Before anything reads the project's rows: until they are committed the
        database says the project is not cached, and this process's own claim on
        its page would keep a request from ever fetching it.
        """
        writing = self._writing.get(name)
        if writing is not None:
            wait_for_futures([writing], timeout=max(deadline - time.monotonic(), 0))

    def _drop_pending(self, name: str, written: Future[None]) -> None:
        entry = self._pages.get(name)
        if entry is not None and entry.written is written:
            self._pages.pop(name)

    def refresh_for_serial(
        self, name: str, required: int, *, removal: bool, cache_buster: str | None
    ) -> Refresh:
        """Refetch a cached page the changelog says changed at serial ``required``.

        The answer counts only if it says it reflects ``required`` or later: a CDN
        can serve the old page for a while after the changelog moved on.
        """
        assert self._upstream is not None
        with self._locks.hold(self._key(name)):
            self._await_write(name, time.monotonic() + self._wait_timeout)
            with self._database.unit_of_work() as db:
                project = load_page_row(db, self.source, name)
            claim = PAGE_CLAIM + self._key(name)
            if project is None and self._claims.held_elsewhere(claim):
                # Another process is storing its first page: refetch on top of it.
                deadline = time.monotonic() + self._wait_timeout
                self._claims.wait_while_held(claim, deadline, self._stop)
            with self._database.unit_of_work() as db:
                project = load_page_row(db, self.source, name)
                if project is None or project.private:
                    return Refresh.NOT_CACHED  # private projects never follow the upstream
                if (project.last_serial or -1) >= required:
                    return Refresh.CURRENT  # a replayed entry, or a request got there first
                etag = None if cache_buster else project.upstream_etag
            try:
                result = self._fetch_page(name, etag, cache_buster)
            except ProjectNotFound:
                if not removal:
                    return Refresh.STALE  # a 404 the changelog does not explain
                self._forget_project(name, serial=required)
                return Refresh.UPDATED
            if result.serial is not None and result.serial < required:
                return Refresh.STALE
            self._store(name, result)
            return Refresh.UPDATED

    def being_fetched(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` whose first page some process is fetching right now: not
        cached yet, but what it stores may predate a change the changelog just told of."""
        prefix = PAGE_CLAIM + self._key("")
        fetching = {key[len(prefix) :] for key in self._claims.live(prefix)}
        return fetching.intersection(names)

    def cached_serials(self, names: Iterable[str]) -> dict[str, int | None]:
        """The stored serial of each of ``names`` that is in the cache."""
        found: dict[str, int | None] = {}
        batch = list(names)
        with self._database.unit_of_work() as db:
            for start in range(0, len(batch), 500):
                rows = db.execute(
                    select(Project.name, Project.last_serial).where(
                        Project.source == self.source,
                        Project.name.in_(batch[start : start + 500]),
                        Project.private.is_(False),
                    )
                )
                found.update((name, serial) for name, serial in rows)
        return found

    def all_cached_serials(self) -> dict[str, int | None]:
        with self._database.unit_of_work() as db:
            rows = db.execute(
                select(Project.name, Project.last_serial).where(
                    Project.source == self.source, Project.private.is_(False)
                )
            )
            return {name: serial for name, serial in rows}

    def _remember(self, db: Session, project: Project, ttl: float) -> CachedPage:
        """The stored page, fresh for ``ttl``: the one in memory while its name's serial
        says nothing changed (11,000 files are not read again for a 304)."""
        serial = name_serial(db, project.name)
        kept = self._current(project.name, serial)
        page = kept.page if kept is not None else stored_page(db, project, serial)
        return self._keep(page, ttl, stale=False, as_of=serial)

    def _keep(
        self,
        page: RenderedPage,
        ttl: float,
        *,
        stale: bool,
        written: Future[None] | None = None,
        as_of: int | None = None,
    ) -> CachedPage:
        kept = self._pages.get(page.name)
        if kept is not None and kept.page is not page and kept.page.same_as(page):
            # Revalidated unchanged: the renderings made already serve on (a big page's
            # rendering costs more than reading it).
            page = kept.page
        entry = CachedPage(page, time.monotonic() + max(ttl, 0), stale, written, as_of=as_of)
        self._pages.put(page.name, entry)
        self._missing.pop(page.name, None)
        return entry

    def drop(self, name: str) -> None:
        """Drop the page from memory only: a file's new hash must show on the next render."""
        self._pages.pop(name)

    def forget(self, name: str) -> None:
        """Drop what this process remembers of ``name`` (after an upload or an admin change)."""
        self._pages.pop(name)
        self._missing.pop(name, None)
        self._names_read_at = float("-inf")

    def _private_names(self) -> frozenset[str]:
        """The names of this source's rows, read again every PRIVATE_REFRESH seconds.

        So that a name nobody made private costs no query on every first request of
        it: a deployment has few private names, and a cold install asks for dozens of
        others one after the other.
        """
        if time.monotonic() - self._names_read_at > PRIVATE_REFRESH:
            guard = database_guard("reading the private names")
            with guard, self._database.unit_of_work() as db:
                names = db.scalars(select(Project.name).where(Project.source == self.source))
                self._names = frozenset(names)
            self._names_read_at = time.monotonic()
        return self._names

    def withdraw(
        self,
        name: str,
        *,
        serial: int,
        project: bool = False,
        files: Iterable[str] = (),
        versions: Iterable[str] = (),
    ) -> None:
        """The changelog says the upstream removed the project, or these files or
        releases, at ``serial``: they stop being served at once, refetch or not."""
        with self._locks.hold(self._key(name)):
            self._await_write(name, time.monotonic() + self._wait_timeout)
            if project:
                self._forget_project(name, serial)
                return
            with self._database.unit_of_work() as db:
                removed = withdraw_files(db, self.source, name, files, versions, serial)
            self._pages.pop(name)
        self._blobs.set_aside(removed)

    def _forget_project(self, name: str, serial: int | None = None) -> None:
        """The upstream says the project does not exist (any more).

        A private project keeps its own files; only its merged upstream ones go.
        """
        if not self.private:
            self._missing[name] = time.monotonic() + self._settings.negative_ttl
        self._pages.pop(name)
        with self._database.unit_of_work() as db:
            removed = remove_project(db, self.source, name, serial)
        self._blobs.set_aside(removed)
