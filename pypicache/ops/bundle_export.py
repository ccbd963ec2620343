"""Exporting a bundle: what the database and store hold for the wanted projects, as a tar."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import IO

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from pypicache.db import Database
from pypicache.errors import BundleError
from pypicache.filefacts import UPLOADED, facts_of
from pypicache.models import PRIVATE_SOURCE, File, Project, utcnow
from pypicache.ops.bundle import BLOB_PREFIX, CHUNK, MANIFEST, BundleFile, BundleProject, Manifest
from pypicache.ops.progress import Progress
from pypicache.storage.local import BlobStore


@dataclass(frozen=True)
class _Source:
    """Where a blob's bytes come from: the store, or (core metadata only) its wheel."""

    size: int
    wheel_sha256: str | None = None  # extract the METADATA of this stored wheel


@dataclass
class ExportPlan:
    """What a bundle will hold; nothing is written until ``write_bundle``."""

    manifest: Manifest
    sources: dict[str, _Source]
    skipped: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.sources.values())

    @property
    def file_count(self) -> int:
        return sum(len(p.files) for p in self.manifest.projects)


def plan_export(
    database: Database,
    store: BlobStore,
    wanted: Mapping[str, set[str] | None],
    source_upstream: str | None,
) -> ExportPlan:
    """The manifest for ``wanted`` (normalized name -> filenames, or None for every file).

    Only files whose blob is in the store go in; the plan says what was left out and why.
    """
    projects: list[BundleProject] = []
    sources: dict[str, _Source] = {}
    skipped: list[str] = []
    with database.unit_of_work() as db:
        for name in sorted(wanted):
            # The private project where there is one: it is what clients get.
            project = db.scalar(
                select(Project)
                .where(Project.name == name)
                .order_by((Project.source == PRIVATE_SOURCE).desc(), Project.source)
                .limit(1)
                .options(selectinload(Project.files))
            )
            if project is None:
                raise BundleError(f"{name} is not in the cache")
            only = wanted[name]
            rows = sorted(
                (f for f in project.files if only is None or f.filename in only),
                key=lambda f: f.filename,
            )
            for missing in sorted((only or set()) - {f.filename for f in rows}):
                skipped.append(f"{name}/{missing}: no longer listed by the index")
            files = []
            for row in rows:
                exported = _export_file(row, store, sources, skipped, name)
                if exported is not None:
                    files.append(exported)
            projects.append(
                BundleProject(
                    name=project.name,
                    display_name=project.display_name,
                    last_serial=project.last_serial,
                    versions=tuple(project.versions or ()),
                    status=project.status,
                    status_reason=project.status_reason,
                    private=project.private,
                    merge_upstream=project.merge_upstream,
                    files=tuple(files),
                )
            )
    manifest = Manifest(source_upstream, utcnow(), tuple(projects))
    return ExportPlan(manifest, sources, skipped)


def _export_file(
    row: File, store: BlobStore, sources: dict[str, _Source], skipped: list[str], project: str
) -> BundleFile | None:
    where = f"{project}/{row.filename}"
    size = _stored_size(store, row.sha256) if row.sha256 is not None else None
    if row.sha256 is None or size is None:
        skipped.append(f"{where}: not cached")
        return None
    sources[row.sha256] = _Source(size)
    metadata = _metadata_blob(row, store) if row.has_metadata else None
    if metadata is not None:
        sources[metadata[0]] = metadata[1]
    elif row.has_metadata:
        skipped.append(f"{where}: core metadata not cached; exported without it")
    facts = msgspec.structs.replace(
        facts_of(row),
        size=size,
        has_metadata=metadata is not None,
        metadata_sha256=metadata[0] if metadata is not None else None,
        # An upstream's URL travels; an uploaded document stays here.
        provenance=row.provenance if row.provenance != UPLOADED else None,
    )
    return facts_of(
        facts,
        BundleFile,
        metadata_size=metadata[1].size if metadata is not None else None,
        origin=row.origin,
    )


def _metadata_blob(row: File, store: BlobStore) -> tuple[str, _Source] | None:
    """The file's core metadata: its stored blob, or, never asked for, its wheel's METADATA."""
    if row.metadata_sha256 is not None:
        size = _stored_size(store, row.metadata_sha256)
        if size is not None:
            return row.metadata_sha256, _Source(size)
    if row.sha256 is None or not row.filename.endswith(".whl"):
        return None
    extracted = _wheel_metadata(store, row.sha256)  # what PEP 658 serves, byte for byte
    if extracted is None:
        return None
    digest = hashlib.sha256(extracted).hexdigest()
    if row.metadata_sha256 not in (None, digest):
        return None  # not what the page promises
    return digest, _Source(len(extracted), wheel_sha256=row.sha256)


def _stored_size(store: BlobStore, sha256: str) -> int | None:
    """The blob's size, or None when it is not (or no longer) in the store."""
    return store.size(sha256)


def _wheel_metadata(store: BlobStore, sha256: str) -> bytes | None:
    """The wheel's top-level ``*.dist-info/METADATA``, byte for byte."""
    try:
        with store.open(sha256) as handle, zipfile.ZipFile(handle) as wheel:
            names = [
                n
                for n in wheel.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            return wheel.read(names[0]) if len(names) == 1 else None
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def write_bundle(plan: ExportPlan, store: BlobStore, out: Path, progress: Progress) -> None:
    """Write the bundle to ``out`` atomically, streaming each blob and checking its hash."""
    out = out.absolute()
    try:
        fd, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    except OSError as exc:
        raise BundleError(f"cannot write {out}: {exc.strerror}") from None
    temp = Path(temp_name)
    mtime = int(plan.manifest.exported_at.replace(tzinfo=UTC).timestamp())
    names = plan.manifest.blobs()
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(
                fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
            ) as tar:
                body = plan.manifest.to_json()
                tar.addfile(_member(MANIFEST, len(body), mtime), io.BytesIO(body))
                for sha256, source in plan.sources.items():
                    progress.update(names[sha256][1])
                    with _open_source(store, sha256, source) as handle:
                        reader = _HashingReader(handle, progress)
                        tar.addfile(_member(BLOB_PREFIX + sha256, source.size, mtime), reader)
                    if reader.hexdigest() != sha256:
                        raise BundleError(
                            f"blob {sha256} ({names[sha256][1]}) is damaged in the store: "
                            f"its bytes hash to {reader.hexdigest()}; no bundle written"
                        )
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, out)
        _fsync_dir(out.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    return info


@contextmanager
def _open_source(store: BlobStore, sha256: str, source: _Source) -> Iterator[IO[bytes]]:
    if source.wheel_sha256 is None:
        try:
            handle = store.open(sha256)
        except FileNotFoundError:
            raise BundleError(f"blob {sha256} left the store during the export") from None
        with handle:
            if handle.size != source.size:
                raise BundleError(f"blob {sha256} changed size in the store during the export")
            yield handle
        return
    metadata = _wheel_metadata(store, source.wheel_sha256)
    if metadata is None:
        raise BundleError(f"blob {source.wheel_sha256} left the store during the export")
    yield io.BytesIO(metadata)


class _HashingReader:
    """Hashes and counts what tarfile reads from a blob; constant memory for any size."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._hash.update(data)
        self._progress.advance(len(data))
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
