"""Retention: keep the cached upstream files under a size limit, least recently used out first.

An evicted file keeps its place on its project page; only its blob goes and
its ``cached_at`` is cleared, so the next download refetches it through the
normal fill.  Private files are never evicted: nothing could bring them back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from sqlalchemy import Subquery, and_, bindparam, func, or_, select, update

from pypicache.cache.claims import FillClaims
from pypicache.cache.fill import Download, Ledger
from pypicache.db import Database
from pypicache.models import File, Project, utcnow
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)

# The claim that makes one process of the deployment run the background round.
ROUND_CLAIM = ":retention-round"

BATCH = 200  # candidates read per query, in least recently used order

# Least seconds from the start of one round to the start of a round a fill woke: a burst
# of fills over the limit costs a round a second, never a loop.
WAKE_GAP = 1.0


class UsageLog:
    """When blobs were last served: noted in memory, written to the database in batches.

    A download only sets a dict entry; writing ``files.last_used_at`` on every
    hot request would make serving wait for the database.  The evictor flushes
    before each round and when it stops.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}

    def touch(self, sha256: str) -> None:
        now = utcnow()
        with self._lock:
            self._pending[sha256] = now

    def flush(self) -> None:
        """Write what was noted; on failure keep it for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        files = File.__table__
        statement = (
            update(files)
            .where(files.c.sha256 == bindparam("b_sha256"))
            .values(last_used_at=bindparam("b_used"))
        )
        try:
            with self._database.unit_of_work() as db:
                # In sha256 order: processes flushing at once then lock the rows they share
                # in the same order, where PostgreSQL would otherwise find them deadlocked.
                rows = [{"b_sha256": k, "b_used": v} for k, v in sorted(pending.items())]
                db.execute(statement, rows)
        except Exception:
            with self._lock:
                for sha256, used in pending.items():
                    self._pending.setdefault(sha256, used)
            raise


@dataclass(frozen=True)
class CacheSize:
    bytes: int
    blobs: int


@dataclass(frozen=True)
class Eviction:
    """A blob of cached upstream files: evicted, or a candidate for it."""

    sha256: str
    size: int
    last_used: datetime
    files: tuple[str, ...]  # "project/filename" of every cached upstream row using the blob
    picked_at: datetime = field(compare=False)  # rows cached after this are not ours to clear


@dataclass
class Collection:
    """What one retention round did (or, dry, would do)."""

    limit: int
    dry_run: bool
    before: CacheSize
    after: CacheSize
    evicted: list[Eviction]
    in_use: list[Eviction]  # skipped: being served right now


class _Outcome(Enum):
    EVICTED = "evicted"
    IN_USE = "in use"
    CHANGED = "changed"  # refilled, re-uploaded privately or evicted by someone else


class Retention:
    """Evicts the least recently used cached upstream blobs until the cache fits ``limit``.

    A blob is the unit: rows sharing a sha256 are evicted together, and a blob
    any private file uses is neither counted nor evicted.  Recency is the
    newest ``last_used_at`` (or ``cached_at``) among the blob's rows.
    """

    def __init__(self, database: Database, store: BlobStore, limit: int) -> None:
        self._database = database
        self.store = store
        self.limit = limit
        # The running count: bytes measured by the last size(), moved by fills and evictions
        # since, so a fill learns whether it crossed the limit without a query.
        self._count_lock = threading.Lock()
        self._noted = 0  # bytes of every fill ever noted, to tell which a measurement saw
        self._estimate: int | None = None

    @property
    def estimate(self) -> int | None:
        """The cached bytes as this process counts them; None until first measured."""
        with self._count_lock:
            return self._estimate

    def note_stored(self, size: int) -> bool:
        """A fill of this process cached ``size`` bytes: True if that may cross the limit.

        Fills of other processes are seen only by the next measurement; a count
        too high costs one needless round, which measures and corrects it.
        """
        with self._count_lock:
            self._noted += size
            if self._estimate is None:
                return bool(self.limit)  # not measured yet: a round will
            self._estimate += size
        return self.over_limit()

    def over_limit(self) -> bool:
        """Whether the cache is over the limit as this process counts it."""
        estimate = self.estimate
        return bool(self.limit) and estimate is not None and estimate > self.limit

    def size(self) -> CacheSize:
        """The bytes and blobs of cached upstream files (what the limit applies to)."""
        with self._count_lock:
            noted_before = self._noted
        groups = self._groups()
        with self._database.unit_of_work() as db:
            total, count = db.execute(
                select(func.coalesce(func.sum(groups.c.size), 0), func.count())
            ).one()
            unknown = list(db.scalars(select(groups.c.sha256).where(groups.c.size.is_(None))))
        # Pages without sizes (HTML-only upstreams): ask the store.
        size = CacheSize(int(total) + sum(self.store.size(s) or 0 for s in unknown), count)
        with self._count_lock:
            # A fill noted while we asked may be in the total already: counted twice is
            # safe (a round too many), missed is not.
            self._estimate = size.bytes + self._noted - noted_before
        return size

    def collect(
        self,
        *,
        dry_run: bool = False,
        report: Callable[[Eviction], None] | None = None,
        stop: threading.Event | None = None,
    ) -> Collection:
        """Evict until the cache fits the limit; ``report`` hears of each eviction as it happens."""
        before = self.size()
        result = Collection(self.limit, dry_run, before, before, [], [])
        if not self.limit or before.bytes <= self.limit:
            return result
        total, blobs = before.bytes, before.blobs
        for candidate in self._candidates():
            if total <= self.limit or (stop is not None and stop.is_set()):
                break
            outcome = _Outcome.EVICTED if dry_run else self._evict(candidate)
            if outcome is _Outcome.IN_USE:
                log.info("not evicting %s: being served", ", ".join(candidate.files))
                result.in_use.append(candidate)
                continue
            if outcome is _Outcome.CHANGED:
                continue
            if not dry_run:
                with self._count_lock:
                    if self._estimate is not None:
                        self._estimate -= candidate.size
                log.info(
                    "evicted %s (%d bytes, last used %s): cached files take %d bytes, "
                    "over the limit of %d",
                    ", ".join(candidate.files),
                    candidate.size,
                    f"{candidate.last_used:%Y-%m-%d %H:%M:%S}",
                    total,
                    self.limit,
                )
            total, blobs = total - candidate.size, blobs - 1
            result.evicted.append(candidate)
            if report is not None:
                report(candidate)
        result.after = CacheSize(total, blobs) if dry_run else self.size()
        return result

    def _groups(self) -> Subquery:
        """One row per evictable blob: sha256, size, last_used."""
        private = select(File.sha256).where(File.origin == "private", File.sha256.is_not(None))
        return (
            select(
                File.sha256.label("sha256"),
                func.max(File.size).label("size"),
                func.max(func.coalesce(File.last_used_at, File.cached_at)).label("last_used"),
            )
            .where(
                File.origin == "upstream",
                File.cached_at.is_not(None),
                File.sha256.is_not(None),
                File.sha256.not_in(private),
            )
            .group_by(File.sha256)
            .subquery()
        )

    def _candidates(self) -> Iterator[Eviction]:
        """Evictable blobs, least recently used first, read a batch at a time."""
        groups = self._groups()
        after: tuple[datetime, str] | None = None
        while True:
            query = select(groups).order_by(groups.c.last_used, groups.c.sha256).limit(BATCH)
            if after is not None:
                query = query.where(
                    or_(
                        groups.c.last_used > after[0],
                        and_(groups.c.last_used == after[0], groups.c.sha256 > after[1]),
                    )
                )
            picked_at = utcnow()
            with self._database.unit_of_work() as db:
                rows = db.execute(query).all()
                names: dict[str, list[str]] = {}
                for sha256, project, filename in db.execute(
                    select(File.sha256, Project.name, File.filename)
                    .join(Project)
                    .where(
                        File.sha256.in_([r.sha256 for r in rows]),
                        File.origin == "upstream",
                        File.cached_at.is_not(None),
                    )
                    .order_by(Project.name, File.filename)
                ):
                    names.setdefault(sha256, []).append(f"{project}/{filename}")
            for row in rows:
                size = row.size if row.size is not None else self.store.size(row.sha256) or 0
                yield Eviction(
                    row.sha256, size, row.last_used, tuple(names.get(row.sha256, ())), picked_at
                )
            if len(rows) < BATCH:
                return
            after = (rows[-1].last_used, rows[-1].sha256)

    def _evict(self, candidate: Eviction) -> _Outcome:
        """Delete the blob unless it is served, then mark its rows uncached; in one transaction."""
        with self._database.unit_of_work() as db:
            holders = db.execute(
                select(File.id, File.origin, File.cached_at, File.metadata_sha256).where(
                    File.sha256 == candidate.sha256,
                    or_(File.cached_at.is_not(None), File.origin == "private"),
                )
            ).all()
            if not holders or any(
                h.origin == "private" or h.cached_at > candidate.picked_at for h in holders
            ):
                return _Outcome.CHANGED
            if not self.store.delete_unless_in_use(candidate.sha256):
                return _Outcome.IN_USE
            # A row a download cached again since the check keeps it: that blob is new.
            db.execute(
                update(File)
                .where(File.id.in_([h.id for h in holders]), File.cached_at <= candidate.picked_at)
                .values(cached_at=None)
            )
            metadata = {h.metadata_sha256 for h in holders if h.metadata_sha256}
        self._drop_metadata(metadata)
        return _Outcome.EVICTED

    def _drop_metadata(self, candidates: set[str]) -> None:
        """The evicted files' core metadata goes too, unless a cached or private file uses it."""
        if not candidates:
            return
        with self._database.unit_of_work() as db:
            kept = set(
                db.scalars(
                    select(File.metadata_sha256).where(
                        File.metadata_sha256.in_(candidates),
                        or_(File.cached_at.is_not(None), File.origin == "private"),
                    )
                )
            )
            kept.update(db.scalars(select(File.sha256).where(File.sha256.in_(candidates))))
        for sha256 in candidates - kept:
            self.store.delete_unless_in_use(sha256)


class Evictor:
    """Runs retention in the background: a round every ``interval`` seconds, stoppable.

    A fill of this process that takes the cache over the limit wakes it at once
    (``note_stored``), so the disk need not wait for the interval; wake-ups while
    a round runs make one more round, at most one per ``wake_gap`` seconds.
    """

    def __init__(
        self,
        retention: Retention,
        usage: UsageLog,
        interval: float,
        claims: FillClaims,
        wake_gap: float = WAKE_GAP,
    ) -> None:
        self.retention = retention
        self.usage = usage
        self.interval = interval
        self.wake_gap = wake_gap
        self._claims = claims
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._round = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="evictor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.usage.flush()
        except Exception:
            log.exception("could not record when cached files were last used")

    def run_once(self) -> Collection:
        """Record recent use, then evict what is over the limit."""
        with self._round:
            self.usage.flush()
            result = self.retention.collect(stop=self._stop)
        if result.evicted:
            log.info(
                "retention: evicted %d blobs (%d bytes); cached files take %d of %d bytes",
                len(result.evicted),
                sum(e.size for e in result.evicted),
                result.after.bytes,
                result.limit,
            )
        return result

    def note_stored(self, size: int) -> None:
        """A fill of this process cached ``size`` bytes; cheap: no query, at most a wake-up."""
        if self.retention.note_stored(size):
            self._wake.set()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a fill from here on makes the next round, not this one
            started = time.monotonic()
            try:
                # One round at a time in the whole deployment: processes evicting at once
                # would each free the excess, together far more than it.
                if self._claims.try_claim(ROUND_CLAIM):
                    try:
                        self.run_once()
                    finally:
                        self._claims.release(ROUND_CLAIM)
                else:
                    self.usage.flush()  # the round elsewhere must know what this host served
                    if self.retention.estimate is None:
                        self.retention.size()  # so this process's fills know the limit
                    if self.retention.over_limit():
                        # The round elsewhere may have measured before our fills: ours
                        # comes soon after it, not an interval later.
                        self._wake.set()
            except Exception:  # retention must outlive any bug; serving goes on
                log.exception("retention round failed; next in %.0fs", self.interval)
            if self._wake.wait(self.interval):
                self._stop.wait(max(0.0, started + self.wake_gap - time.monotonic()))


class CountingLedger:
    """The fills' ledger, telling the evictor the size of each file a fill cached."""

    def __init__(self, ledger: Ledger, evictor: Evictor) -> None:
        self._ledger = ledger
        self._evictor = evictor

    def recorded(self, download: Download) -> str | None:
        return self._ledger.recorded(download)

    def stored(self, download: Download, sha256: str, size: int, *, claim: bool = False) -> None:
        self._ledger.stored(download, sha256, size, claim=claim)
        if not download.metadata:  # core metadata is neither counted nor evicted
            self._evictor.note_stored(size)
