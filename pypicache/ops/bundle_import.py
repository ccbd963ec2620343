"""Importing a bundle: its blobs into the store, its projects and files into the database."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from pypicache.cache.changes import record_change
from pypicache.db import Database
from pypicache.errors import BundleError, HashMismatch
from pypicache.filefacts import new_row
from pypicache.models import PRIVATE_SOURCE, AuditEntry, DeletedFilename, File, Project, utcnow
from pypicache.ops.bundle import (
    BLOB_PREFIX,
    CHUNK,
    MANIFEST,
    MAX_MANIFEST,
    BundleFile,
    BundleProject,
    Manifest,
    timestamp_text,
)
from pypicache.ops.progress import Progress
from pypicache.storage.local import BlobStore


class Bundle:
    """An open bundle whose manifest parsed and whose blobs are all present at their sizes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise BundleError(f"{path}: no such file") from None
        except (tarfile.TarError, OSError) as exc:
            raise BundleError(f"{path}: not a bundle (a plain tar file): {exc}") from None
        try:
            self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
            self.manifest = Manifest.from_json(self._read_manifest())
            self.blobs = self.manifest.blobs()
            for sha256, (size, filename) in self.blobs.items():
                member = self._members.get(BLOB_PREFIX + sha256)
                if member is None:
                    raise BundleError(f"{path}: the blob of {filename} ({sha256}) is missing")
                if member.size != size:
                    raise BundleError(
                        f"{path}: the blob of {filename} ({sha256}) has {member.size} bytes, "
                        f"the manifest says {size}; refused"
                    )
        except BaseException:
            self._tar.close()
            raise

    def _read_manifest(self) -> bytes:
        member = self._members.get(MANIFEST)
        if member is None:
            raise BundleError(f"{self.path}: no {MANIFEST}; not a pypicache bundle")
        if member.size > MAX_MANIFEST:
            raise BundleError(f"{self.path}: {MANIFEST} is implausibly large")
        handle = self._tar.extractfile(member)
        assert handle is not None  # a regular file
        with handle:
            return handle.read()

    def open_blob(self, sha256: str) -> BinaryIO:
        handle = self._tar.extractfile(self._members[BLOB_PREFIX + sha256])
        assert handle is not None  # a regular file
        return handle  # type: ignore[return-value]

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.blobs.values())

    def missing_bytes(self, store: BlobStore) -> int:
        """What an import would add to ``store``."""
        return sum(size for sha256, (size, _) in self.blobs.items() if not store.exists(sha256))

    def verify(self, progress: Progress) -> None:
        """Check every blob's sha256; BundleError naming the first damaged one."""
        for sha256, (_size, filename) in self.blobs.items():
            progress.update(filename)
            digest = hashlib.sha256()
            with self.open_blob(sha256) as handle:
                for chunk in _chunks(handle):
                    digest.update(chunk)
                    progress.advance(len(chunk))
            if digest.hexdigest() != sha256:
                raise BundleError(
                    f"{self.path}: the blob of {filename} is corrupt: the manifest says sha256 "
                    f"{sha256}, its bytes hash to {digest.hexdigest()}; nothing was imported"
                )

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ImportReport:
    projects_created: int = 0
    projects_updated: int = 0
    projects_unchanged: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    blobs_stored: int = 0
    bytes_stored: int = 0
    blobs_present: int = 0
    # Left as they were: the index holds something else under the name (the operator must
    # look), or a newer page than the bundle's (nothing to do).
    conflicts: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


def import_bundle(
    bundle: Bundle,
    database: Database,
    store: BlobStore,
    progress: Progress,
    *,
    actor: str,
    upstream: str,
) -> ImportReport:
    """Make the index list and serve what the bundle's pages list; call ``verify`` first.

    Cached upstream projects become the pages of ``upstream`` (the first configured one).

    Project by project: its missing blobs enter the store (each hash checked again on
    commit), then one transaction creates or updates its rows.  Importing a bundle twice
    changes nothing the second time.  Blobs that end up unused (a conflict, a failure)
    are removed again.
    """
    report = ImportReport()
    stored: set[str] = set()
    present: set[str] = set()
    try:
        for project in bundle.manifest.projects:
            for sha256 in _project_blobs(project):
                if sha256 in stored or sha256 in present:
                    continue
                if store.exists(sha256):
                    present.add(sha256)
                    continue
                _store_blob(bundle, store, sha256, progress)
                stored.add(sha256)
            with database.unit_of_work() as db:
                source = PRIVATE_SOURCE if project.private else upstream
                _apply_project(db, source, project, report, actor, bundle.manifest)
    finally:
        kept = stored - _drop_unused(database, store, stored)
        report.blobs_stored = len(kept)
        report.bytes_stored = sum(bundle.blobs[s][0] for s in kept)
        report.blobs_present = len(present)
    return report


def _project_blobs(project: BundleProject) -> list[str]:
    blobs = []
    for f in project.files:
        blobs.append(f.sha256)
        if f.metadata_sha256 is not None:
            blobs.append(f.metadata_sha256)
    return blobs


def _store_blob(bundle: Bundle, store: BlobStore, sha256: str, progress: Progress) -> None:
    size, filename = bundle.blobs[sha256]
    progress.update(filename)
    writer = store.writer()
    try:
        with bundle.open_blob(sha256) as handle:
            for chunk in _chunks(handle):
                writer.write(chunk)
                progress.advance(len(chunk))
        if writer.size != size:
            raise BundleError(f"the blob of {filename} has {writer.size} bytes, expected {size}")
        writer.commit(sha256)
    except HashMismatch as exc:
        raise BundleError(f"the blob of {filename} changed while importing it: {exc}") from None
    except BaseException:
        writer.abort()
        raise


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def _drop_unused(database: Database, store: BlobStore, candidates: set[str]) -> set[str]:
    """Delete blobs this import stored that no file refers to; returns them."""
    if not candidates:
        return set()
    with database.unit_of_work() as db:
        rows = db.execute(
            select(File.sha256, File.metadata_sha256).where(
                or_(File.sha256.in_(candidates), File.metadata_sha256.in_(candidates))
            )
        )
        used = {digest for row in rows for digest in row}
    unused = candidates - used
    for sha256 in unused:
        store.delete(sha256)
    return unused


def _at_least_as_new(bundle_serial: int | None, local_serial: int | None) -> bool:
    """Whether the bundle's page may replace ours: never an older upstream state."""
    if local_serial is None:
        return True
    return bundle_serial is not None and bundle_serial >= local_serial


def _apply_project(
    db: Session,
    source: str,
    bp: BundleProject,
    report: ImportReport,
    actor: str,
    manifest: Manifest,
) -> None:
    now = utcnow()
    # A private project here and a cached one in the bundle, or the other way round: which
    # one clients get is an admin's decision, not an import's.
    other = db.scalar(
        select(Project.private).where(Project.name == bp.name, Project.private != bp.private)
    )
    if other is not None:
        kind = "private" if other else "cached from the upstream"
        report.conflicts.append(f"{bp.name}: {kind} here but not in the bundle")
        return
    project = db.scalar(
        select(Project)
        .where(Project.source == source, Project.name == bp.name)
        .options(selectinload(Project.files))
    )
    created = project is None
    if project is None:
        project = Project(
            source=source,
            name=bp.name,
            display_name=bp.display_name,
            private=bp.private,
            merge_upstream=bp.merge_upstream,
            versions=[],
            files=[],
            checked_at=now,
        )
        db.add(project)
    newer = _at_least_as_new(bp.last_serial, project.last_serial)
    local = {f.filename: f for f in project.files}
    changed = False
    for bf in bp.files:
        row = local.get(bf.filename)
        if row is None:
            if not newer:
                report.superseded.append(
                    f"{bp.name}/{bf.filename}: not listed by this index's newer page"
                )
                continue
            if bf.origin == "private" and db.get(DeletedFilename, bf.filename) is not None:
                report.conflicts.append(
                    f"{bp.name}/{bf.filename}: a private filename deleted here is never reused"
                )
                continue
            project.files.append(new_row(bf, origin=bf.origin, cached_at=now))
            db.add(
                AuditEntry(
                    at=now,
                    action="import",
                    project=bp.name,
                    filename=bf.filename,
                    new_sha256=bf.sha256,
                    actor=actor,
                    detail=f"from a bundle exported at {timestamp_text(manifest.exported_at)}",
                )
            )
            report.files_added += 1
            changed = True
            continue
        if (row.sha256 is not None and row.sha256 != bf.sha256) or row.origin != bf.origin:
            report.conflicts.append(
                f"{bp.name}/{bf.filename}: this index has other bytes or another origin for "
                f"it (sha256 {row.sha256}, {row.origin})"
            )
            continue
        if _update_row(row, bf, now, newer):
            report.files_updated += 1
            changed = True
        else:
            report.files_unchanged += 1
    if newer:
        versions = sorted(set(bp.versions) | {f.version for f in project.files if f.version})
        changed |= _assign(
            project,
            display_name=bp.display_name,
            last_serial=bp.last_serial,
            versions=versions,
            status=bp.status,
            status_reason=bp.status_reason,
        )  # merge_upstream, where the project exists, stays this index's admins' choice
    if created or changed:
        record_change(db, bp.name)
    if created:
        report.projects_created += 1
    elif changed:
        # Our stored upstream validator belonged to the page we had; ask afresh next time.
        _assign(project, checked_at=now, upstream_etag=None)
        report.projects_updated += 1
    else:
        report.projects_unchanged += 1


def _update_row(row: File, bf: BundleFile, now: datetime, newer: bool) -> bool:
    """Bring an existing row up to the bundle; True if anything changed."""
    # Facts about the bytes hold whatever the page's age: their hash, their size, that they
    # are stored now, and their core metadata (a bundle without it knows less, not better).
    changed = _assign(row, sha256=bf.sha256, size=bf.size)
    if row.cached_at is None:
        changed |= _assign(row, cached_at=now)
    if bf.has_metadata and row.metadata_sha256 in (None, bf.metadata_sha256):
        changed |= _assign(row, has_metadata=True, metadata_sha256=bf.metadata_sha256)
    if newer:
        changed |= _assign(
            row,
            version=bf.version,
            requires_python=bf.requires_python,
            yanked=bf.yanked,
            yanked_reason=bf.yanked_reason,
            upload_time=bf.upload_time,
        )
        if row.origin == "upstream":  # an uploaded file keeps the document stored with it
            changed |= _assign(row, provenance=bf.provenance)
    return changed


def _assign(row: object, **values: Any) -> bool:
    """Set the attributes that differ; True if any did (so an equal import writes nothing)."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
