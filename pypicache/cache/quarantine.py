"""Bytes the upstream took back: kept outside the servable store, never served again.

A file removed upstream (a changelog removal, a 404 on refetch, a project quarantined
upstream) or whose bytes the upstream replaced is what an incident responder asks
for first: which machines got this, and what was in it.  So its blob is not deleted
but moved here, beside a record of what it was; retention never counts it, ``verify``
checks it, and only an admin deletes it (by hand: the area is plain files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pypicache.digests import is_sha256
from pypicache.models import utcnow
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)

# A record is written beside the bytes as ``<sha256>.<id>.json``: one file per removal,
# so two processes quarantining the same blob never rewrite each other's record.
RECORD_SUFFIX = ".json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Removal:
    """One file the upstream took back, as the page store saw it go."""

    sha256: str
    source: str
    project: str
    filename: str
    why: str  # "removed upstream (changelog serial 1234)", "the upstream quarantined ..."


@dataclass(frozen=True)
class QuarantinedFile:
    """A removal as the quarantine area records it."""

    sha256: str
    source: str
    project: str
    filename: str
    why: str
    at: str  # RFC 3339
    kept: bool  # whether the bytes are here (False: the file was never cached)


class Quarantine:
    """The quarantine area: a folder of blobs named by sha256, and their records."""

    def __init__(self, store: BlobStore, root: Path) -> None:
        self._store = store
        self.root = root

    def keep(self, removal: Removal, *, still_used: bool) -> bool:
        """Move the removed file's blob here (copy it, when another file still serves the
        same bytes), and record why; whether the bytes are here now."""
        if not is_sha256(removal.sha256):
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / removal.sha256
        kept = target.exists()
        if not kept:
            kept = (
                self._copy(removal.sha256, target)
                if still_used
                else self._store.set_aside(removal.sha256, target)
            )
        self._record(removal, kept)
        if kept:
            log.warning(
                "quarantined %s/%s (%s): %s",
                removal.project,
                removal.filename,
                removal.sha256,
                removal.why,
            )
        return kept

    def files(self) -> Iterator[QuarantinedFile]:
        """Every record, oldest first; a record that cannot be read is skipped, logged."""
        if not self.root.is_dir():
            return
        records = sorted(self.root.glob(f"*{RECORD_SUFFIX}"), key=lambda p: p.stat().st_mtime)
        for path in records:
            try:
                data = json.loads(path.read_bytes())
                found = QuarantinedFile(**data)
            except (OSError, ValueError, TypeError) as exc:
                log.error("quarantine record %s is unreadable: %s", path, exc)
                continue
            yield found

    def blobs(self) -> Iterator[Path]:
        """The quarantined blobs (named by their sha256)."""
        if self.root.is_dir():
            yield from (p for p in self.root.iterdir() if is_sha256(p.name))

    def damaged(self) -> list[str]:
        """The quarantined blobs whose bytes no longer hash to their name."""
        bad = []
        for path in self.blobs():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != path.name:
                bad.append(path.name)
        return bad

    def _copy(self, sha256: str, target: Path) -> bool:
        try:
            reader = self._store.open(sha256)
        except FileNotFoundError:
            return False
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        with reader, partial.open("wb") as out:
            shutil.copyfileobj(reader, out, _CHUNK)  # type: ignore[misc]
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        return True

    def _record(self, removal: Removal, kept: bool) -> None:
        record = QuarantinedFile(
            **asdict(removal), at=utcnow().isoformat(timespec="seconds") + "Z", kept=kept
        )
        name = f"{removal.sha256}.{uuid.uuid4().hex[:12]}{RECORD_SUFFIX}"
        partial = self.root / f".{name}.part"
        with partial.open("wb") as out:
            out.write(json.dumps(asdict(record), sort_keys=True).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.root / name)
