"""The file cache: a distribution file or its metadata, from the store or filled from upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from pypicache.cache.claims import FillClaims
from pypicache.cache.fill import Fill, FillRegistry
from pypicache.cache.rendering import FileRecord
from pypicache.db import Database
from pypicache.errors import FileNotFound, UpstreamUnavailable
from pypicache.models import File, Project, utcnow
from pypicache.storage.local import BlobReader, BlobStore
from pypicache.upstream.client import UpstreamClient

if TYPE_CHECKING:
    from pypicache.cache.index import CachedPage


class Pages(Protocol):
    """What the file cache needs of the page cache: the page that lists a file."""

    def project_page(self, name: str) -> CachedPage: ...

    def drop(self, name: str) -> None: ...


METADATA_SUFFIX = ".metadata"


@dataclass(frozen=True)
class FileAnswer:
    """What a download gets: stored bytes, bytes as they arrive, a redirect, or only headers.

    Exactly one of ``handle`` (a stored blob), ``chunks`` (a fill's bytes, ``size``
    of them) or ``location`` (the object store's URL) is set, or none for a HEAD
    answered from the page alone.  ``sha256`` names the bytes (the ETag).
    """

    record: FileRecord
    sha256: str | None
    handle: BlobReader | None = None
    chunks: Iterator[bytes] | None = None
    size: int | None = None
    location: str | None = None


class FileCache:
    """Finds a file on its project's page and serves it from the store, filling it on a miss."""

    def __init__(
        self,
        database: Database,
        store: BlobStore,
        upstream: UpstreamClient | None,
        pages: Pages,
        fills: FillRegistry,
        claims: FillClaims,
        wait_timeout: float,
        record_use: Callable[[str], None] | None = None,
    ) -> None:
        self._database = database
        self._store = store
        self._upstream = upstream
        self._pages = pages
        self._fills = fills
        self._claims = claims
        self._wait_timeout = wait_timeout
        # Told the sha256 of every blob opened for serving (retention's recency).
        self._record_use = record_use

    def locate_file(self, project: str, filename: str) -> FileRecord:
        record = self._pages.project_page(project).page.files.get(filename)
        if record is None:
            raise FileNotFound(f"{project} has no file {filename}")
        return record

    def open_stored(self, sha256: str | None) -> BlobReader | None:
        """The stored blob, or None when it is not in the store; opening it counts as a use."""
        if sha256 is None:
            return None
        try:
            handle = self._store.open(sha256)
        except FileNotFoundError:
            return None
        if self._record_use is not None:
            self._record_use(sha256)
        return handle

    def open(
        self,
        project: str,
        filename: str,
        *,
        head: bool,
        ranged: bool,
        note: Callable[[str, str], None],
    ) -> FileAnswer:
        """Serve ``filename`` (or its ``.metadata``): from the store, or filled from upstream.

        ``note(kind, "hit" | "miss")`` is told as soon as the store has been looked at,
        so a download that then fails still counts as the miss it was.  A HEAD of a
        file the page gives a size for answers without fetching (uv probes range
        support that way); a range needs the whole file stored first.
        """
        if filename.endswith(METADATA_SUFFIX):
            record = self.locate_file(project, filename.removesuffix(METADATA_SUFFIX))
            handle = self.open_stored(record.metadata_sha256)
            note("metadata", "hit" if handle is not None else "miss")
            if handle is None:
                handle = self.open_metadata(record)
            return FileAnswer(record, record.metadata_sha256, handle=handle)
        record = self.locate_file(project, filename)
        handle = self.open_stored(record.sha256)
        if handle is not None:
            note("file", "hit")
            if not head:
                assert record.sha256 is not None  # a blob was opened by it
                location = self._store.download_url(record.sha256, record.filename)
                if location is not None:
                    handle.close()  # it only proved the blob is stored
                    return FileAnswer(record, record.sha256, location=location)
            return FileAnswer(record, record.sha256, handle=handle)
        if head and record.size is not None:
            return FileAnswer(record, record.sha256, size=record.size)
        fill = self.fill(record)
        note("file", "miss" if fill is not None else "hit")
        if fill is None:  # stored by another request a moment ago
            return self._stored(record, record.sha256)
        size = fill.wait_started()
        if size is None or ranged:
            # Without a size there is no Content-Length to promise; a range needs the whole file.
            return self._stored(record, fill.wait_finished())
        return FileAnswer(record, record.sha256, chunks=fill.chunks(), size=size)

    def _stored(self, record: FileRecord, sha256: str | None) -> FileAnswer:
        handle = self.open_stored(sha256)
        if handle is None:
            raise FileNotFound(f"{record.filename} vanished from the store")
        return FileAnswer(record, sha256, handle=handle)

    def fill(self, record: FileRecord) -> Fill | None:
        """The download bringing ``record`` into the store (None: it is stored already)."""
        sha256 = record.sha256
        return self._fill(
            key=f"{record.project}/{record.filename}",
            url=record.upstream_url,
            sha256=sha256,
            size=record.size,
            on_commit=lambda digest, size: self._file_cached(record, digest, size),
            recorded_sha256=lambda: self._recorded(record, metadata=False),
        )

    def open_metadata(self, record: FileRecord) -> BlobReader:
        """The file's core metadata (PEP 658), fetched from the upstream on first use."""
        if not record.has_metadata:
            raise FileNotFound(f"{record.filename} has no metadata file")
        stored = self.open_stored(record.metadata_sha256)
        if stored is not None:
            return stored
        fill = self._fill(
            key=f"{record.project}/{record.filename}.metadata",
            url=record.upstream_url + ".metadata" if record.upstream_url else None,
            sha256=record.metadata_sha256,
            size=None,
            on_commit=lambda digest, _size: self._metadata_cached(record, digest),
            recorded_sha256=lambda: self._recorded(record, metadata=True),
        )
        sha256 = fill.wait_finished() if fill is not None else record.metadata_sha256
        stored = self.open_stored(sha256)
        if stored is None:
            raise FileNotFound(f"metadata of {record.filename} vanished from the store")
        return stored

    def _fill(
        self,
        key: str,
        url: str | None,
        sha256: str | None,
        size: int | None,
        on_commit: Callable[[str, int], None],
        recorded_sha256: Callable[[], str | None],
    ) -> Fill | None:
        upstream = self._upstream

        def find_stored() -> tuple[str, int] | None:
            # Without an advertised hash, the row another process filled names the blob.
            digest = sha256 or recorded_sha256()
            size = self._store.size(digest) if digest is not None else None
            return None if digest is None or size is None else (digest, size)

        if upstream is None or url is None:
            raise UpstreamUnavailable(f"{key} is not cached and there is no upstream to fetch it")
        return self._fills.get_or_start(
            key,
            is_stored=lambda: sha256 is not None and self._store.exists(sha256),
            make=lambda: Fill(
                key=key,
                open_upstream=lambda: upstream.open(url),
                store=self._store,
                expected_sha256=sha256,
                expected_size=size,
                on_commit=on_commit,
                stop=self._fills.stop_event,
                read_timeout=self._wait_timeout,
                claims=self._claims,
                find_stored=find_stored,
            ),
        )

    def _file_cached(self, record: FileRecord, sha256: str, size: int) -> None:
        with self._database.unit_of_work() as db:
            row = self._file_row(db, record)
            if row is None:
                return
            if row.sha256 is None:  # the page gave no hash: now we know it
                row.sha256, row.size = sha256, size
                self._pages.drop(record.project)
            if row.sha256 == sha256:
                row.cached_at = row.last_used_at = utcnow()

    def _metadata_cached(self, record: FileRecord, sha256: str) -> None:
        with self._database.unit_of_work() as db:
            row = self._file_row(db, record)
            if row is not None and row.metadata_sha256 is None:
                row.metadata_sha256 = sha256
                self._pages.drop(record.project)

    def _recorded(self, record: FileRecord, *, metadata: bool) -> str | None:
        """The sha256 the database says was stored for the file (or its metadata)."""
        with self._database.unit_of_work() as db:
            row = self._file_row(db, record)
            if row is None:
                return None
            if metadata:
                return row.metadata_sha256
            return row.sha256 if row.cached_at is not None else None

    def _file_row(self, db: Session, record: FileRecord) -> File | None:
        return db.scalar(
            select(File)
            .join(Project)
            .where(Project.name == record.project, File.filename == record.filename)
        )
