"""Verification: rehash every stored blob and hold the store and the database against each other.

Finds blobs the database expects but the store lacks (missing), blobs nothing
refers to (orphans), blobs whose bytes do not hash to their name (corrupt) and
temporary files (and object store uploads) left behind by interrupted writes.  A repair removes what
can be refetched or is waste; a private file cannot be refetched, so a corrupt
or missing one stays a problem until someone uploads it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from sqlalchemy import or_, select, update

from pypicache.db import Database
from pypicache.models import File, Project
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)

STALE_TEMP_AGE = 3600.0  # seconds; a live download writes its temp file all the time
# An upload stores its blobs a moment before it records them, a fill likewise: a blob this
# young may be one of those, not an orphan.
ORPHAN_GRACE = 600.0
_HASH_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Kind(Enum):
    MISSING = "missing"
    ORPHAN = "orphan"
    CORRUPT = "corrupt"
    STALE_TEMP = "stale temp file"
    STALE_UPLOAD = "stale upload"  # an object store's unfinished multipart upload


@dataclass(frozen=True)
class Finding:
    kind: Kind
    name: str  # the blob's sha256, or the file's name for what is not a proper blob
    size: int
    location: str | None = None  # its path or object key in the store (None: missing)
    files: tuple[str, ...] = ()  # "project/filename" of the rows that use the blob
    private: bool = False  # a private file uses it: it cannot be refetched
    repaired: bool = False
    note: str = ""


@dataclass
class Verification:
    blobs: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def remaining(self) -> list[Finding]:
        """The problems a repair did not (or could not) fix."""
        return [f for f in self.findings if not f.repaired]


class Reporter(Protocol):
    """Whoever shows a verification's progress as it goes."""

    def started(self, blobs: int, total_bytes: int) -> None: ...

    def hashed(self, name: str, size: int) -> None: ...

    def found(self, finding: Finding) -> None: ...


@dataclass(frozen=True)
class _Blob:
    name: str
    location: str
    size: int
    mtime: float

    def finding(self, kind: Kind, **details: object) -> Finding:
        return Finding(kind, self.name, self.size, self.location, **details)  # type: ignore[arg-type]


class Verifier:
    def __init__(self, database: Database, store: BlobStore, quarantine: Path) -> None:
        self._database = database
        self.store = store
        self.quarantine = quarantine

    def run(self, *, repair: bool, reporter: Reporter) -> Verification:
        """Rehash everything, report each problem, and with ``repair`` fix what can be fixed."""
        listing = [_Blob(o.name, o.location, o.size, o.mtime) for o in self.store.objects()]
        result = Verification(len(listing), sum(b.size for b in listing))
        reporter.started(result.blobs, result.bytes)
        good: list[_Blob] = []
        corrupt: list[_Blob] = []
        misplaced: list[_Blob] = []
        for blob in listing:
            digest = self._sha256(blob.location)
            reporter.hashed(blob.name, blob.size)
            if digest is None:
                continue  # deleted while we looked (evicted, invalidated)
            if not _SHA256.fullmatch(blob.name) or blob.location != self.store.location(blob.name):
                misplaced.append(blob)  # the store never looks there: unreachable
            elif digest == blob.name:
                good.append(blob)
            else:
                corrupt.append(blob)

        # Read after hashing, so rows recorded meanwhile count as references.
        with self._database.unit_of_work() as db:
            referenced = {s for (s,) in db.execute(select(File.sha256)) if s}
            referenced |= {s for (s,) in db.execute(select(File.metadata_sha256)) if s}
        findings = [self._corrupt(blob) for blob in corrupt]
        findings += self._orphans(good, referenced)
        findings += [b.finding(Kind.ORPHAN, note="not where the store looks") for b in misplaced]
        findings += self._missing({b.name for b in good} | {b.name for b in corrupt})
        findings += self._stale_temp_files()
        findings += [
            Finding(Kind.STALE_UPLOAD, upload.name, upload.size, upload.location)
            for upload in self.store.stale_uploads(time.time() - STALE_TEMP_AGE)
        ]
        if repair:
            recorded = self._referenced({f.name for f in findings if f.kind is Kind.ORPHAN})
            findings = [self._repair(f, recorded) for f in findings]
        for finding in findings:
            result.findings.append(finding)
            reporter.found(finding)
        return result

    # -- finding problems ------------------------------------------------------------------

    def _corrupt(self, blob: _Blob) -> Finding:
        with self._database.unit_of_work() as db:
            users = [
                (f"{project}/{filename}{'' if sha256 == blob.name else '.metadata'}", origin)
                for project, filename, origin, sha256 in db.execute(
                    select(Project.name, File.filename, File.origin, File.sha256)
                    .join(Project)
                    .where(or_(File.sha256 == blob.name, File.metadata_sha256 == blob.name))
                    .order_by(Project.name, File.filename)
                )
            ]
        return blob.finding(
            Kind.CORRUPT,
            files=tuple(name for name, _ in users),
            private=any(origin == "private" for _, origin in users),
        )

    def _orphans(self, blobs: list[_Blob], referenced: set[str]) -> list[Finding]:
        young = time.time() - ORPHAN_GRACE
        return [
            b.finding(Kind.ORPHAN) for b in blobs if b.name not in referenced and b.mtime < young
        ]

    def _referenced(self, names: set[str]) -> set[str]:
        """Those of ``names`` some row refers to now."""
        found: set[str] = set()
        batch = sorted(names)
        with self._database.unit_of_work() as db:
            for start in range(0, len(batch), 500):
                chunk = batch[start : start + 500]
                found.update(db.scalars(select(File.sha256).where(File.sha256.in_(chunk))))
                found.update(
                    db.scalars(select(File.metadata_sha256).where(File.metadata_sha256.in_(chunk)))
                )
        return found

    def _missing(self, present: set[str]) -> list[Finding]:
        """Blobs a cached row or a private file (its metadata too) needs, absent from the store."""
        needed: dict[str, list[tuple[str, str, str]]] = {}
        with self._database.unit_of_work() as db:
            for project, filename, origin, sha256, metadata_sha256 in db.execute(
                select(Project.name, File.filename, File.origin, File.sha256, File.metadata_sha256)
                .join(Project)
                .where(or_(File.cached_at.is_not(None), File.origin == "private"))
                .order_by(Project.name, File.filename)
            ):
                if sha256 and sha256 not in present:
                    needed.setdefault(sha256, []).append((project, filename, origin))
                if origin == "private" and metadata_sha256 and metadata_sha256 not in present:
                    needed.setdefault(metadata_sha256, []).append(
                        (project, filename + ".metadata", origin)
                    )
        return [
            Finding(
                Kind.MISSING,
                sha256,
                0,
                files=tuple(f"{p}/{f}" for p, f, _ in users),
                private=any(origin == "private" for _, _, origin in users),
            )
            for sha256, users in needed.items()
            if not self.store.exists(sha256)  # stored since we listed: a fill
        ]

    def _stale_temp_files(self) -> list[Finding]:
        stale = time.time() - STALE_TEMP_AGE
        found = []
        for entry in os.scandir(self.store.tmp):
            try:
                info = entry.stat()
            except FileNotFoundError:
                continue
            if entry.is_file() and info.st_mtime < stale:
                found.append(Finding(Kind.STALE_TEMP, entry.name, info.st_size, entry.path))
        return found

    # -- repairs ---------------------------------------------------------------------------

    def _repair(self, finding: Finding, recorded: set[str]) -> Finding:
        if finding.kind is Kind.STALE_TEMP:
            assert finding.location is not None
            Path(finding.location).unlink(missing_ok=True)
            log.info("verify: removed stale temp file %s", finding.name)
            return replace(finding, repaired=True, note="removed")
        if finding.kind is Kind.STALE_UPLOAD:
            assert finding.location is not None
            self.store.abort_upload(finding.location)
            log.info("verify: aborted the stale upload of %s", finding.name)
            return replace(finding, repaired=True, note="aborted")
        if finding.kind is Kind.ORPHAN:
            assert finding.location is not None
            if finding.name in recorded:
                if finding.location == self.store.location(finding.name):
                    return replace(finding, repaired=True, note="recorded meanwhile: kept")
                return replace(finding, note="a file uses its name: move or remove it by hand")
            self.store.delete_location(finding.location)
            log.info("verify: removed orphaned blob %s", finding.location)
            return replace(finding, repaired=True, note="removed")
        if finding.kind is Kind.MISSING:
            if finding.private:
                log.error(
                    "verify: PRIVATE blob %s missing (%s)", finding.name, ", ".join(finding.files)
                )
                return replace(finding, note="upload the file again")
            self._forget_cached(finding.name)
            log.warning("verify: %s missing; will be refetched on demand", finding.name)
            return replace(finding, repaired=True, note="marked not cached; refetched on demand")
        return self._repair_corrupt(finding)

    def _repair_corrupt(self, finding: Finding) -> Finding:
        if finding.private:
            # Never serve wrong bytes, never destroy the only copy: set it aside.
            self.quarantine.mkdir(parents=True, exist_ok=True)
            target = self.quarantine / finding.name
            if not self.store.set_aside(finding.name, target):
                return replace(finding, note="gone meanwhile")
            self._forget_cached(finding.name)
            log.error(
                "verify: CORRUPT PRIVATE blob %s (%s) cannot be refetched; moved to %s",
                finding.name,
                ", ".join(finding.files),
                target,
            )
            return replace(finding, note=f"moved to {target}; upload the file again")
        self.store.delete(finding.name)
        self._forget_cached(finding.name)
        log.warning("verify: removed corrupt blob %s; refetched on demand", finding.name)
        return replace(finding, repaired=True, note="removed; refetched on demand")

    def _forget_cached(self, sha256: str) -> None:
        """Upstream rows of a blob that is gone: not cached any more, so the next request fills."""
        with self._database.unit_of_work() as db:
            db.execute(
                update(File)
                .where(
                    File.sha256 == sha256, File.origin == "upstream", File.cached_at.is_not(None)
                )
                .values(cached_at=None)
            )

    def _sha256(self, location: str) -> str | None:
        """The hash of what is stored at ``location`` (streamed); None when it is gone."""
        digest = hashlib.sha256()
        try:
            with self.store.open_location(location) as handle:
                for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()
