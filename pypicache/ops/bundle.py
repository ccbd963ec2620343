"""Bundles: cached projects carried to an air-gapped index in one plain tar file.

A bundle holds ``manifest.json`` (what the project pages say: serials, versions, and per
file its hashes, requires-python, yank state, upload time, core metadata and origin) and
every blob the pages need under ``blobs/<sha256>``: the distribution files and their PEP
658 metadata.  Exports stream blobs from the store into a temporary file renamed into
place at the end; imports check every blob against the manifest before any of them
enters the store, so a damaged or tampered bundle changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packaging.utils import canonicalize_name

from pypicache.digests import is_sha256
from pypicache.errors import BundleError
from pypicache.filefacts import FileFacts
from pypicache.upstream.entries import checked_provenance

FORMAT = "pypicache-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BLOB_PREFIX = "blobs/"
CHUNK = 1024 * 1024
# A manifest lists files, not their bytes; anything this large is not one of ours.
MAX_MANIFEST = 256 * 1024 * 1024
ORIGINS = ("upstream", "private")


# -- the manifest ----------------------------------------------------------------------------


class BundleFile(FileFacts, frozen=True, gc=False):
    """A file's facts as a bundle carries them: its bytes always with it, so hash and size known.

    ``metadata_sha256`` and ``metadata_size`` are set exactly when has_metadata.
    """

    sha256: str
    size: int  # the blob's size
    metadata_size: int | None
    origin: str


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
            "exported-at": timestamp_text(self.exported_at),
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
        "upload-time": timestamp_text(f.upload_time) if f.upload_time else None,
        "has-metadata": f.has_metadata,
        "metadata-sha256": f.metadata_sha256,
        "metadata-size": f.metadata_size,
        "origin": f.origin,
        "upstream-url": f.upstream_url,
        "provenance": f.provenance,
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
        provenance=_provenance(f, origin),
    )


def _provenance(f: _Fields, origin: str) -> str | None:
    """The upstream's provenance URL of an upstream file; documents are not carried, so
    an uploaded file's provenance stays behind."""
    value = f.get("provenance", str, optional=True)
    if value is None or origin != "upstream":
        return None
    url, why = checked_provenance(value, value)
    if why is not None:
        raise BundleError(f"{f.where}.provenance: {why}")
    return url


def timestamp_text(value: datetime) -> str:
    return value.isoformat() + "Z"


def _parse_timestamp(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BundleError(f"{where}: not an ISO 8601 time: {text!r}") from None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


# -- export ----------------------------------------------------------------------------------


# -- import ----------------------------------------------------------------------------------
