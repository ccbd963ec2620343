"""Bundles: cached projects carried to an air-gapped index in one plain tar file.

A bundle holds ``manifest.json`` (what the project pages say: serials, versions, and per
file its hashes, requires-python, yank state, upload time, core metadata and origin) and
every blob the pages need under ``blobs/<sha256>``: the distribution files and their PEP
658 metadata.  Exports stream blobs from the store into a temporary file renamed into
place at the end; imports check every blob against the manifest before any of them
enters the store, so a damaged or tampered bundle changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from packaging.utils import canonicalize_name
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from pypicache.cache.index import utcnow
from pypicache.db import Database
from pypicache.digests import is_sha256
from pypicache.errors import BundleError, HashMismatch
from pypicache.models import AuditEntry, DeletedFilename, File, Project
from pypicache.ops.progress import Progress
from pypicache.storage.local import BlobStore

FORMAT = "pypicache-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BLOB_PREFIX = "blobs/"
CHUNK = 1024 * 1024
# A manifest lists files, not their bytes; anything this large is not one of ours.
MAX_MANIFEST = 256 * 1024 * 1024
ORIGINS = ("upstream", "private")


# -- the manifest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFile:
    """One file as its page lists it; ``metadata_sha256`` is set exactly when has_metadata."""

    filename: str
    version: str | None
    sha256: str
    size: int  # the blob's size
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    upload_time: datetime | None  # naive UTC
    has_metadata: bool
    metadata_sha256: str | None
    metadata_size: int | None
    origin: str
    upstream_url: str | None


@dataclass(frozen=True)
class BundleProject:
    name: str  # normalized
    display_name: str
    last_serial: int | None
    versions: tuple[str, ...]
    status: str | None
    status_reason: str | None
    private: bool
    merge_upstream: bool
    files: tuple[BundleFile, ...]


@dataclass(frozen=True)
class Manifest:
    source_upstream: str | None
    exported_at: datetime  # naive UTC
    projects: tuple[BundleProject, ...]

    def blobs(self) -> dict[str, tuple[int, str]]:
        """Every blob once: sha256 -> (size, the filename it belongs to, for messages)."""
        found: dict[str, tuple[int, str]] = {}
        for project in self.projects:
            for f in project.files:
                entries = [(f.sha256, f.size, f.filename)]
                if f.metadata_sha256 is not None and f.metadata_size is not None:
                    entries.append((f.metadata_sha256, f.metadata_size, f.filename + ".metadata"))
                for sha256, size, name in entries:
                    known = found.setdefault(sha256, (size, name))
                    if known[0] != size:
                        raise BundleError(f"{MANIFEST}: two sizes for blob {sha256}")
        return found

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "format-version": FORMAT_VERSION,
            "exported-at": _timestamp(self.exported_at),
            "source-upstream": self.source_upstream,
            "projects": [_project_json(p) for p in self.projects],
        }
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse and check a manifest; BundleError naming the first thing that is wrong."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from None
        doc = _Fields(data, MANIFEST)
        if doc.get("format", str) != FORMAT:
            raise BundleError(f"{MANIFEST}: not a {FORMAT}")
        version = doc.get("format-version", int)
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{MANIFEST}: format version {version} is newer than this pypicache "
                f"understands ({FORMAT_VERSION}); upgrade pypicache"
            )
        projects = tuple(_parse_project(p) for p in doc.items("projects"))
        names = [p.name for p in projects]
        if len(set(names)) != len(names):
            raise BundleError(f"{MANIFEST}: a project is listed twice")
        manifest = cls(
            source_upstream=doc.get("source-upstream", str, optional=True),
            exported_at=_parse_timestamp(doc.get("exported-at", str), f"{MANIFEST}.exported-at"),
            projects=projects,
        )
        manifest.blobs()  # one size per blob
        return manifest


def _project_json(p: BundleProject) -> dict[str, Any]:
    return {
        "name": p.name,
        "display-name": p.display_name,
        "last-serial": p.last_serial,
        "versions": list(p.versions),
        "status": p.status,
        "status-reason": p.status_reason,
        "private": p.private,
        "merge-upstream": p.merge_upstream,
        "files": [_file_json(f) for f in p.files],
    }


def _file_json(f: BundleFile) -> dict[str, Any]:
    return {
        "filename": f.filename,
        "version": f.version,
        "sha256": f.sha256,
        "size": f.size,
        "requires-python": f.requires_python,
        "yanked": f.yanked,
        "yanked-reason": f.yanked_reason,
        "upload-time": _timestamp(f.upload_time) if f.upload_time else None,
        "has-metadata": f.has_metadata,
        "metadata-sha256": f.metadata_sha256,
        "metadata-size": f.metadata_size,
        "origin": f.origin,
        "upstream-url": f.upstream_url,
    }


class _Fields:
    """Typed access to one JSON object of the manifest, with its path for messages."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected an object")
        self.data = data
        self.where = where

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        value = self.data.get(key)
        if value is None and optional:
            return None
        # bool is an int to Python, never to a manifest.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BundleError(f"{self.where}.{key}: expected {kind.__name__}, got {value!r}")
        return value

    def count(self, key: str, *, optional: bool = False) -> Any:
        value = self.get(key, int, optional=optional)
        if value is not None and value < 0:
            raise BundleError(f"{self.where}.{key}: must not be negative")
        return value

    def sha256(self, key: str, *, optional: bool = False) -> Any:
        value = self.get(key, str, optional=optional)
        if value is not None and not is_sha256(value):
            raise BundleError(
                f"{self.where}.{key}: not a sha256 hex digest (64 lower-case hex characters): "
                f"{value!r:.100}; nothing was imported"
            )
        return value

    def items(self, key: str) -> Iterator[_Fields]:
        for i, item in enumerate(self.get(key, list)):
            yield _Fields(item, f"{self.where}.{key}[{i}]")


def _parse_project(p: _Fields) -> BundleProject:
    name = p.get("name", str)
    if canonicalize_name(name) != name:
        raise BundleError(f"{p.where}.name: not a normalized project name: {name!r}")
    p.where = f"{MANIFEST}.projects[{name}]"
    versions = p.get("versions", list)
    if not all(isinstance(v, str) for v in versions):
        raise BundleError(f"{p.where}.versions: expected strings")
    files = tuple(_parse_file(f, p.where) for f in p.items("files"))
    filenames = [f.filename for f in files]
    if len(set(filenames)) != len(filenames):
        raise BundleError(f"{p.where}: a file is listed twice")
    return BundleProject(
        name=name,
        display_name=p.get("display-name", str),
        last_serial=p.count("last-serial", optional=True),
        versions=tuple(versions),
        status=p.get("status", str, optional=True),
        status_reason=p.get("status-reason", str, optional=True),
        private=p.get("private", bool),
        merge_upstream=p.get("merge-upstream", bool),
        files=files,
    )


def _parse_file(f: _Fields, project_where: str) -> BundleFile:
    filename = f.get("filename", str)
    if (
        not filename
        or filename in (".", "..")
        or any(c in filename for c in "/\\\0")
        or len(filename) > 512
    ):
        raise BundleError(f"{f.where}.filename: not a file name: {filename!r}")
    f.where = f"{project_where}.files[{filename}]"
    has_metadata = f.get("has-metadata", bool)
    metadata_sha256 = f.sha256("metadata-sha256", optional=True)
    metadata_size = f.count("metadata-size", optional=True)
    if has_metadata != (metadata_sha256 is not None) or has_metadata != (metadata_size is not None):
        raise BundleError(f"{f.where}: has-metadata needs metadata-sha256 and metadata-size")
    origin = f.get("origin", str)
    if origin not in ORIGINS:
        raise BundleError(f"{f.where}.origin: expected one of {', '.join(ORIGINS)}")
    upload_time = f.get("upload-time", str, optional=True)
    return BundleFile(
        filename=filename,
        version=f.get("version", str, optional=True),
        sha256=f.sha256("sha256"),
        size=f.count("size"),
        requires_python=f.get("requires-python", str, optional=True),
        yanked=f.get("yanked", bool),
        yanked_reason=f.get("yanked-reason", str, optional=True),
        upload_time=(
            _parse_timestamp(upload_time, f"{f.where}.upload-time") if upload_time else None
        ),
        has_metadata=has_metadata,
        metadata_sha256=metadata_sha256,
        metadata_size=metadata_size,
        origin=origin,
        upstream_url=f.get("upstream-url", str, optional=True),
    )


def _timestamp(value: datetime) -> str:
    return value.isoformat() + "Z"


def _parse_timestamp(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BundleError(f"{where}: not an ISO 8601 time: {text!r}") from None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


# -- export ----------------------------------------------------------------------------------


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
            project = db.scalar(
                select(Project).where(Project.name == name).options(selectinload(Project.files))
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
    return BundleFile(
        filename=row.filename,
        version=row.version,
        sha256=row.sha256,
        size=size,
        requires_python=row.requires_python,
        yanked=row.yanked,
        yanked_reason=row.yanked_reason,
        upload_time=row.upload_time,
        has_metadata=metadata is not None,
        metadata_sha256=metadata[0] if metadata is not None else None,
        metadata_size=metadata[1].size if metadata is not None else None,
        origin=row.origin,
        upstream_url=row.upstream_url,
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


# -- import ----------------------------------------------------------------------------------


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
) -> ImportReport:
    """Make the index list and serve what the bundle's pages list; call ``verify`` first.

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
                _apply_project(db, project, report, actor, bundle.manifest)
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
    db: Session, bp: BundleProject, report: ImportReport, actor: str, manifest: Manifest
) -> None:
    now = utcnow()
    project = db.scalar(
        select(Project).where(Project.name == bp.name).options(selectinload(Project.files))
    )
    created = project is None
    if project is None:
        project = Project(
            name=bp.name,
            display_name=bp.display_name,
            private=bp.private,
            merge_upstream=bp.merge_upstream,
            versions=[],
            files=[],
            checked_at=now,
        )
        db.add(project)
    elif project.private != bp.private:
        kind = "private" if project.private else "cached from the upstream"
        report.conflicts.append(f"{bp.name}: {kind} here but not in the bundle")
        return
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
            project.files.append(_new_row(bf, now))
            db.add(
                AuditEntry(
                    at=now,
                    action="import",
                    project=bp.name,
                    filename=bf.filename,
                    new_sha256=bf.sha256,
                    actor=actor,
                    detail=f"from a bundle exported at {_timestamp(manifest.exported_at)}",
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
    if created:
        report.projects_created += 1
    elif changed:
        # Our stored upstream validator belonged to the page we had; ask afresh next time.
        _assign(project, checked_at=now, upstream_etag=None)
        report.projects_updated += 1
    else:
        report.projects_unchanged += 1


def _new_row(bf: BundleFile, now: datetime) -> File:
    return File(
        filename=bf.filename,
        version=bf.version,
        sha256=bf.sha256,
        size=bf.size,
        requires_python=bf.requires_python,
        yanked=bf.yanked,
        yanked_reason=bf.yanked_reason,
        upload_time=bf.upload_time,
        has_metadata=bf.has_metadata,
        metadata_sha256=bf.metadata_sha256,
        upstream_url=bf.upstream_url,
        origin=bf.origin,
        cached_at=now,
    )


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
    return changed


def _assign(row: object, **values: Any) -> bool:
    """Set the attributes that differ; True if any did (so an equal import writes nothing)."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed
