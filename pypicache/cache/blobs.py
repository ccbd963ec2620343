"""Blob housekeeping: a blob leaves the store once no file of any project names it, and
the bytes of a file the upstream took back go to the quarantine area instead."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import or_, select

from pypicache.cache.quarantine import Quarantine, Removal
from pypicache.db import Database
from pypicache.models import File
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)


class Blobs:
    """Deletes blobs the database no longer needs; run after the change committed."""

    def __init__(self, database: Database, store: BlobStore, quarantine: Quarantine) -> None:
        self._database = database
        self._store = store
        self.quarantine = quarantine

    def set_aside(self, removals: Iterable[Removal]) -> None:
        """Move the blobs of files removed upstream to the quarantine area (a copy, where
        another file still serves the same bytes); run after the removal committed."""
        pending = [r for r in removals if r.sha256]
        if not pending:
            return
        used = self._used({r.sha256 for r in pending}, only_stored=True)
        for removal in pending:
            self.quarantine.keep(removal, still_used=removal.sha256 in used)

    def drop_unreferenced(self, candidates: Iterable[str]) -> None:
        """Delete those of ``candidates`` that no file lists any more, as its bytes or metadata."""
        self._drop(candidates, only_stored=False)

    def drop_uncached(self, candidates: Iterable[str]) -> None:
        """Delete those of ``candidates`` no cached or private file uses (a purge's rule)."""
        self._drop(candidates, only_stored=True)

    def _drop(self, candidates: Iterable[str], *, only_stored: bool) -> None:
        wanted = set(candidates)
        if not wanted:
            return
        for sha256 in wanted - self._used(wanted, only_stored=only_stored):
            self._store.delete(sha256)
            log.info("deleted blob %s: no file uses it any more", sha256)

    def _used(self, wanted: set[str], *, only_stored: bool) -> set[str]:
        """Those of ``wanted`` some file names (``only_stored``: a cached or private one)."""
        # Wheels of one release for several platforms share one METADATA blob.
        uses = (File.sha256, File.metadata_sha256)
        stored = or_(File.cached_at.is_not(None), File.origin == "private")
        used: set[str] = set()
        with self._database.unit_of_work() as db:
            for column in uses:
                query = select(column).where(column.in_(wanted))
                used.update(db.scalars(query.where(stored) if only_stored else query))
        return used
