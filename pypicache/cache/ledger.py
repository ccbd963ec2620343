"""The file ledger: what the database says is stored for each file, written as fills finish."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from pypicache.cache.claims import FillClaims
from pypicache.cache.fill import Download
from pypicache.db import Database
from pypicache.models import File, Project, utcnow


class RenderedPages(Protocol):
    """The page cache: a page that shows a hash learned from the bytes must be rendered again."""

    def drop(self, name: str) -> None: ...


class FileLedger:
    """The fills' bookkeeping in the files' rows, shared by every process of the deployment."""

    def __init__(self, database: Database, pages: RenderedPages, claims: FillClaims) -> None:
        self._database = database
        self._pages = pages
        self._claims = claims

    def recorded(self, download: Download) -> str | None:
        with self._database.unit_of_work() as db:
            row = _row(db, download)
            if row is None:
                return None
            if download.metadata:
                return row.metadata_sha256
            return row.sha256 if row.cached_at is not None else None

    def stored(self, download: Download, sha256: str, size: int, *, claim: bool = False) -> None:
        with self._database.unit_of_work() as db:
            self._record(db, download, sha256, size)
            if claim:
                self._claims.release_in(db, download.key)

    def _record(self, db: Session, download: Download, sha256: str, size: int) -> None:
        row = _row(db, download)
        if row is None:
            return
        if download.metadata:
            if row.metadata_sha256 is None:
                row.metadata_sha256 = sha256
                self._pages.drop(download.project)
            return
        if row.sha256 is None:  # the page gave no hash: now we know it
            row.sha256, row.size = sha256, size
            self._pages.drop(download.project)
        if row.sha256 == sha256:
            row.cached_at = row.last_used_at = utcnow()


# Built once (a statement's building and cache key cost more than its run), as every
# fill reads its file's row.
_ROW = (
    select(File)
    .join(Project)
    .where(
        Project.source == bindparam("source"),
        Project.name == bindparam("project"),
        File.filename == bindparam("filename"),
    )
)


def _row(db: Session, download: Download) -> File | None:
    return db.scalar(
        _ROW,
        {"source": download.source, "project": download.project, "filename": download.filename},
    )
