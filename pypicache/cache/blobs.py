"""Blob housekeeping: a blob leaves the store once no file of any project names it."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import or_, select

from pypicache.db import Database
from pypicache.models import File
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)


class Blobs:
    """Deletes blobs the database no longer needs; run after the change committed."""

    def __init__(self, database: Database, store: BlobStore) -> None:
        self._database = database
        self._store = store

    def drop_unreferenced(self, candidates: Iterable[str]) -> None:
        """Delete those of ``candidates`` that no file lists any more."""
        wanted = set(candidates)
        if not wanted:
            return
        with self._database.unit_of_work() as db:
            used = set(db.scalars(select(File.sha256).where(File.sha256.in_(wanted))))
        for sha256 in wanted - used:
            self._store.delete(sha256)
            log.info("deleted blob %s: no cached file uses it any more", sha256)

    def drop_uncached(self, candidates: Iterable[str]) -> None:
        """Delete those of ``candidates`` no cached or private file uses (a purge's rule)."""
        wanted = set(candidates)
        if not wanted:
            return
        with self._database.unit_of_work() as db:
            used = set(
                db.scalars(
                    select(File.sha256).where(
                        File.sha256.in_(wanted),
                        or_(File.cached_at.is_not(None), File.origin == "private"),
                    )
                )
            )
        for sha256 in wanted - used:
            self._store.delete(sha256)
