"""The changelog follower: keeps an upstream's cached pages in step with it, serial by serial.

One background thread per upstream and process; a lease in the database makes
exactly one process of a deployment the leader of each.  The leader reads what
changed upstream (the XML-RPC changelog, or the serials of the PEP 691 JSON
project list), marks the cached projects among them dirty with the serial they
must reach, refetches them, and advances the watermark: every upstream change up
to it is in the cache.  An upstream that offers neither (a static index) is left
to revalidation once its pages are ``page_ttl`` old; the follower asks again now
and then whether it has learnt one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pypicache.cache.index import IndexService, Refresh
from pypicache.db import Database
from pypicache.errors import ChangelogUnavailable, UpstreamUnavailable
from pypicache.follower.changelog import ChangelogEntry, Withdrawal, XmlRpcChangelog, withdrawal
from pypicache.models import DirtyProject, File, FollowerState, Project, utcnow
from pypicache.settings import Settings
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.entries import NotModified

log = logging.getLogger(__name__)

# What the follower of an upstream with neither changelog nor serials records as its method.
PAGE_TTL_METHOD = "page-ttl"
# Seconds before such a follower asks its upstream again whether it can tell what changed.
PROBE_AGAIN = 3600.0
# A changelog answer this long may be a cut-off page: then read on to the upstream's serial.
FULL_PAGE_HINT = 1000
STALE_ATTEMPTS = 3  # per project and round, like bandersnatch: then the next round
MAX_BACKOFF = 300.0
# Dirty projects refetched at once: a backlog's refetches cost round trips, not CPU.
REFETCH_WORKERS = 4


@dataclass(frozen=True)
class Change:
    serial: int
    removal: bool  # the newest change removed the project
    # What any change of the round removed: withdrawn before the refetch (PyPI never
    # reuses a filename, so a removed file stays removed whatever came after).
    removed_project: bool = False
    removed_files: frozenset[str] = frozenset()
    removed_versions: frozenset[str] = frozenset()

    def then(self, entry: ChangelogEntry) -> Change:
        """This change followed by ``entry`` of the same name."""
        gone = withdrawal(entry) or Withdrawal()
        files = self.removed_files
        if gone.filename:
            files = files - {gone.filename} if gone.added else files | {gone.filename}
        return Change(
            entry.serial,
            entry.action == "remove project",
            self.removed_project or gone.project,
            files,
            self.removed_versions | ({gone.version} if gone.version else set()),
        )

    @property
    def withdraws(self) -> bool:
        return self.removed_project or bool(self.removed_files or self.removed_versions)


_NOTHING = Change(-1, removal=False)


class Follower:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        service: IndexService,
        upstream: UpstreamClient,
        changelog: XmlRpcChangelog | None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.name = service.source  # the upstream's configured name
        self.upstream = upstream
        self.changelog = changelog
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._database = database
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._replayed = False
        self._failures = 0
        self._last_call = 0.0
        self._lease_renewed = 0.0
        self._page_size = 0  # the longest changelog answer seen: the upstream's page size
        self._probe_after = 0.0  # monotonic; for an upstream that could not be followed

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_forever, name=f"follower:{self.name}"[:60], daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._release_lease()
        if self.changelog is not None:
            self.changelog.close()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            delay = self.settings.follow_interval
            try:
                self.run_once()
                self._failures = 0
            except (ChangelogUnavailable, UpstreamUnavailable) as exc:
                self._failures += 1
                delay = self._backoff(getattr(exc, "retry_after", None))
                log.warning("follower: %s; next try in %.1fs", exc, delay)
                self._record_error(str(exc))
            except Exception as exc:  # the follower must outlive any bug; serving goes on
                self._failures += 1
                delay = self._backoff(None)
                log.exception("follower round failed; next try in %.1fs", delay)
                self._record_error(f"{type(exc).__name__}: {exc}")
            self._stop.wait(delay)

    def _backoff(self, retry_after: float | None) -> float:
        delay = self.settings.follow_interval * 2 ** min(self._failures, 10)
        delay = min(delay, max(MAX_BACKOFF, self.settings.follow_interval))
        return max(delay, retry_after or 0.0)

    # -- one round -------------------------------------------------------------------------

    def run_once(self) -> bool:
        """One round if this process holds the lease; returns whether it did."""
        self._ensure_state()
        if not self._take_lease():
            return False
        with self._database.unit_of_work() as db:
            state = self._state(db)
            state.last_poll_at = utcnow()
            watermark, read_serial = state.watermark, state.read_serial
        if watermark is None:
            if time.monotonic() >= self._probe_after:
                self._bootstrap()
            return True
        if not self._replayed:
            # After a restart, read a window again: an entry processed twice changes nothing.
            read_serial = max(
                0, min(read_serial or watermark, watermark) - self.settings.replay_serials
            )
            self._replayed = True
        self._read_changes(read_serial)
        self._refresh_dirty()
        self._advance_watermark(success=True)
        return True

    def _ensure_state(self) -> None:
        """This upstream's bookkeeping row, made by whichever process gets there first."""
        with self._database.unit_of_work() as db:
            if db.scalar(select(FollowerState.id).where(FollowerState.upstream == self.name)):
                return
        try:
            with self._database.unit_of_work() as db:
                db.add(FollowerState(upstream=self.name))
        except IntegrityError:
            pass  # another process made it a moment ago

    def _state(self, db: Session) -> FollowerState:
        return db.scalars(select(FollowerState).where(FollowerState.upstream == self.name)).one()

    def _bootstrap(self) -> None:
        """First start: follow from the upstream's current serial, never walk its history.

        An upstream that tells no serial at all (a static index) is revalidated by
        ``page_ttl`` alone; with ``follow_method = auto`` that is no error.
        """
        try:
            method, serial, etag = self._current_serial()
        except ChangelogUnavailable as exc:
            if self.settings.follow_method != "auto":
                raise
            self._probe_after = time.monotonic() + PROBE_AGAIN
            with self._database.unit_of_work() as db:
                state = self._state(db)
                state.method, state.last_error = PAGE_TTL_METHOD, None
                state.last_success_at = utcnow()
            log.info(
                "follower: %s cannot tell what changed (%s); its pages are revalidated "
                "after page_ttl",
                self.name,
                exc,
            )
            return
        with self._database.unit_of_work() as db:
            state = self._state(db)
            state.watermark = state.read_serial = state.upstream_serial = serial
            state.method, state.index_etag = method, etag
            state.last_success_at, state.last_error = utcnow(), None
        self._replayed = True
        log.info("follower of %s starts at upstream serial %d (%s)", self.name, serial, method)

    def _current_serial(self) -> tuple[str, int, str | None]:
        if self._use_xmlrpc():
            try:
                assert self.changelog is not None
                return "xmlrpc", self.changelog.last_serial(), None
            except ChangelogUnavailable as exc:
                if self.settings.follow_method == "xmlrpc":
                    raise
                log.warning("XML-RPC changelog unavailable (%s); trying the JSON index", exc)
        snapshot = self._project_serials(None)
        if isinstance(snapshot, NotModified) or snapshot[0] is None:
            raise ChangelogUnavailable("the upstream's project list carries no serial")
        return "simple-index", snapshot[0], snapshot[2]

    def _use_xmlrpc(self) -> bool:
        return self.changelog is not None and self.settings.follow_method in ("auto", "xmlrpc")

    # -- reading what changed ----------------------------------------------------------------

    def _read_changes(self, read_serial: int) -> None:
        if self._use_xmlrpc():
            try:
                self._read_xmlrpc(read_serial)
                return
            except ChangelogUnavailable as exc:
                if self.settings.follow_method == "xmlrpc":
                    raise
                log.warning("XML-RPC changelog unavailable (%s); diffing the JSON index", exc)
        self._read_index()

    def _read_xmlrpc(self, read_serial: int) -> None:
        """Read the changelog past ``read_serial``: usually one call per round.

        Only when a call returns a page that looks cut off (PyPI returns at most
        50,000 rows) does it ask for the upstream's serial and page on to it.  A page
        shorter than one seen before is the end, not a cut: no call to ask.
        """
        assert self.changelog is not None
        target = read_serial
        while not self._stop.is_set():
            entries = self._call(self.changelog.since, read_serial)
            if entries:
                changes: dict[str, Change] = {}
                for entry in entries:  # oldest first: the last action per name wins
                    changes[entry.name] = changes.get(entry.name, _NOTHING).then(entry)
                read_serial = entries[-1].serial
                cut_off = len(entries) >= max(FULL_PAGE_HINT, self._page_size)
                self._page_size = max(self._page_size, len(entries))
                if cut_off and target <= read_serial:
                    target = self._call(self.changelog.last_serial)
                self._save_progress(
                    "xmlrpc", read_serial, changes, upstream_serial=max(target, read_serial)
                )
                self._renew_lease_if_due()
            else:
                self._save_progress("xmlrpc", read_serial, {}, upstream_serial=read_serial)
            if not entries or read_serial >= target:
                return

    def _read_index(self) -> None:
        with self._database.unit_of_work() as db:
            etag = self._state(db).index_etag
        snapshot = self._project_serials(etag)
        if isinstance(snapshot, NotModified):
            return
        serial, changes, new_etag = snapshot
        if serial is None:
            raise ChangelogUnavailable("the upstream's project list carries no serial")
        self._save_progress("simple-index", serial, changes, upstream_serial=serial, etag=new_etag)

    def _project_serials(
        self, etag: str | None
    ) -> tuple[int | None, dict[str, Change], str | None] | NotModified:
        """Diff the JSON project list against the cache: changed and vanished cached projects."""
        result = self.upstream.project_serials(etag)
        if isinstance(result, NotModified):
            return result
        cached = self.service.all_cached_serials()
        changes: dict[str, Change] = {}
        seen: set[str] = set()
        for name, serial in result:
            if name in cached:
                seen.add(name)
                if serial > (cached[name] or -1):
                    changes[name] = Change(serial, removal=False)
        if result.serial is not None:
            for name in cached.keys() - seen:  # cached, but no longer listed upstream
                changes[name] = Change(result.serial, removal=True)
        return result.serial, changes, result.etag

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """One XML-RPC call, spaced as PyPI asks of its clients.

        The space runs from the end of the last exchange: reading a 50,000-row answer
        takes a second that the upstream never sees, so it need not be waited again.
        """
        assert self.changelog is not None
        wait = self._last_call + self.settings.changelog_min_interval - time.monotonic()
        if wait > 0:
            self._stop.wait(wait)
        try:
            return method(*args)
        finally:
            self._last_call = max(self.changelog.exchanged_at, self._last_call)

    def _save_progress(
        self,
        method: str,
        read_serial: int,
        changes: dict[str, Change],
        *,
        upstream_serial: int,
        etag: str | None = None,
    ) -> None:
        """Mark changed cached projects dirty and move the read pointer, in one transaction.

        A crash between reading the changelog and refetching loses nothing: the
        dirty rows are there on restart.  Names nobody cached cost nothing.
        """
        cached = self.service.cached_serials(changes)
        # A first page being fetched now may be stored from before these changes: it is
        # refetched like a cached one (the refetch waits for it to be stored).
        for name in self.service.being_fetched(changes.keys() - cached.keys()):
            cached[name] = None
        for name, change in changes.items():
            if change.withdraws and name in cached and (cached[name] or -1) < change.serial:
                self.service.withdraw(
                    name,
                    serial=change.serial,
                    project=change.removed_project,
                    files=change.removed_files,
                    versions=change.removed_versions,
                )
        with self._database.unit_of_work() as db:
            for name, change in changes.items():
                if name not in cached or (cached[name] or -1) >= change.serial:
                    continue
                dirty = db.get(DirtyProject, (self.name, name))
                if dirty is None:
                    db.add(
                        DirtyProject(
                            upstream=self.name,
                            name=name,
                            required_serial=change.serial,
                            removed=change.removal,
                        )
                    )
                elif change.serial >= dirty.required_serial:
                    dirty.required_serial, dirty.removed = change.serial, change.removal
            state = self._state(db)
            state.method = method
            state.read_serial = read_serial
            state.upstream_serial = max(upstream_serial, state.upstream_serial or 0)
            if etag is not None:
                state.index_etag = etag

    # -- refetching ------------------------------------------------------------------------

    def _refresh_dirty(self) -> None:
        """Refetch every dirty project, REFETCH_WORKERS at a time, oldest serial first.

        Each project leaves the dirty table only once its own refetch succeeded, and
        the watermark is computed after all of them: the order they finish in is free.
        """
        with self._database.unit_of_work() as db:
            dirty = [
                (d.name, d.required_serial, d.removed)
                for d in db.scalars(
                    select(DirtyProject)
                    .where(DirtyProject.upstream == self.name)
                    .order_by(DirtyProject.required_serial)
                )
            ]
        if not dirty:
            return
        pool = ThreadPoolExecutor(
            max_workers=min(REFETCH_WORKERS, len(dirty)), thread_name_prefix="follower-refetch"
        )
        try:
            pending: set[Future[None]] = {pool.submit(self._refresh, *row) for row in dirty}
            while pending:
                # Wake now and then even if every refetch is slow: the lease must not lapse.
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a bug ends the round, as it would without the pool
                self._renew_lease_if_due()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _refresh(self, name: str, required: int, removed: bool) -> None:
        if self._stop.is_set():
            return
        error = None
        for attempt in range(STALE_ATTEMPTS):
            # A stale CDN answer is retried with backoff and a cache-busting parameter.
            buster = f"{required}-{attempt}-{uuid.uuid4().hex[:6]}" if attempt else None
            try:
                outcome = self.service.refresh_for_serial(
                    name, required, removal=removed, cache_buster=buster
                )
            except UpstreamUnavailable as exc:
                error = str(exc)
                break
            if outcome is not Refresh.STALE:
                with self._database.unit_of_work() as db:
                    db.execute(
                        delete(DirtyProject).where(
                            DirtyProject.upstream == self.name,
                            DirtyProject.name == name,
                            DirtyProject.required_serial == required,
                        )
                    )
                return
            error = f"upstream still serves a page older than serial {required}"
            if self._stop.wait(min(1.0, self.settings.follow_interval) * 2**attempt):
                break
        log.warning("follower: %s of %s stays dirty: %s", name, self.name, error)
        with self._database.unit_of_work() as db:
            row = db.get(DirtyProject, (self.name, name))
            if row is not None:
                row.attempts += 1
                row.last_error = error

    def _advance_watermark(self, *, success: bool) -> None:
        with self._database.unit_of_work() as db:
            state = self._state(db)
            oldest_dirty = db.scalar(
                select(func.min(DirtyProject.required_serial)).where(
                    DirtyProject.upstream == self.name
                )
            )
            read = state.read_serial or 0
            reached = read if oldest_dirty is None else min(read, oldest_dirty - 1)
            previous = state.watermark or 0
            # A replay reads below the watermark without making it any less true.
            if oldest_dirty is None or oldest_dirty > previous:
                reached = max(reached, previous)
            state.watermark = reached
            behind = reached < (state.upstream_serial or 0)
            state.behind_since = (state.behind_since or utcnow()) if behind else None
            if success:
                state.last_success_at = utcnow()
                state.last_error = None

    # -- the lease -------------------------------------------------------------------------

    def _take_lease(self) -> bool:
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.follow_lease)
        with self._database.unit_of_work() as db:
            result = db.execute(
                update(FollowerState)
                .where(
                    FollowerState.upstream == self.name,
                    or_(
                        FollowerState.leader == self.identity,
                        FollowerState.leader.is_(None),
                        FollowerState.lease_expires_at < now,
                    ),
                )
                .values(leader=self.identity, lease_expires_at=expires)
            )
            held = result.rowcount == 1  # type: ignore[attr-defined]
        if held:
            self._lease_renewed = time.monotonic()
        return held

    def _renew_lease_if_due(self) -> None:
        if time.monotonic() - self._lease_renewed > self.settings.follow_lease / 3:
            self._take_lease()

    def _release_lease(self) -> None:
        """Hand over at once on a clean stop, instead of making others wait out the lease."""
        with self._database.unit_of_work() as db:
            db.execute(
                update(FollowerState)
                .where(FollowerState.upstream == self.name, FollowerState.leader == self.identity)
                .values(leader=None, lease_expires_at=None)
            )

    def _record_error(self, message: str) -> None:
        try:
            with self._database.unit_of_work() as db:
                state = self._state(db)
                if state.leader == self.identity:
                    state.last_error, state.last_error_at = message, utcnow()
        except Exception:
            log.exception("follower could not record its error")


def status(
    database: Database, upstreams: Sequence[str], followers: Sequence[Follower]
) -> dict[str, Any]:
    """What /api/status reports: each upstream's serials, lag, health and leader (the
    first upstream's at the top level too), and the cache's size."""
    by_name = {follower.name: follower for follower in followers}
    with database.unit_of_work() as db:
        states = {s.upstream: s for s in db.scalars(select(FollowerState))}
        dirty = dict(
            db.execute(
                select(DirtyProject.upstream, func.count()).group_by(DirtyProject.upstream)
            ).all()
        )
        each = {
            name: _upstream_status(states.get(name), by_name.get(name), dirty.get(name, 0))
            for name in upstreams
        }
        return {
            **(each[upstreams[0]] if upstreams else {}),
            "upstreams": each,
            "cached_projects": db.scalar(select(func.count()).select_from(Project)),
            "cached_files": db.scalar(
                select(func.count()).select_from(File).where(File.cached_at.is_not(None))
            ),
        }


def _upstream_status(
    state: FollowerState | None, follower: Follower | None, dirty: int
) -> dict[str, Any]:
    state = state or FollowerState()
    now = utcnow()
    lag_serials = (
        max((state.upstream_serial or 0) - state.watermark, 0)
        if state.watermark is not None
        else None
    )
    leader = state.leader if state.lease_expires_at and state.lease_expires_at > now else None
    return {
        "following": follower is not None,
        "method": state.method,
        "upstream_serial": state.upstream_serial,
        "watermark": state.watermark,
        "read_serial": state.read_serial,
        "lag_serials": lag_serials,
        "lag_seconds": (now - state.behind_since).total_seconds() if state.behind_since else 0.0,
        "last_poll_at": _iso(state.last_poll_at),
        "last_success_at": _iso(state.last_success_at),
        "last_error": state.last_error,
        "last_error_at": _iso(state.last_error_at),
        "leader": leader,
        "this_process": follower.identity if follower is not None else None,
        "dirty_projects": dirty,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None
