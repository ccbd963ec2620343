"""The blob store: files addressed by sha256, written atomically, never half-visible."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import HashMismatch


class BlobWriter(Protocol):
    """A blob being written: hashed as it grows, published only by ``commit``."""

    temp_path: Path
    size: int

    def write(self, chunk: bytes) -> None: ...

    def commit(self, expected_sha256: str | None) -> str: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def writer(self) -> BlobWriter: ...

    def delete(self, sha256: str) -> None: ...


class LocalBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``; temp files in ``tmp`` on the same filesystem."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob; FileNotFoundError if it is not (or no longer) stored."""
        return self.path(sha256).open("rb")

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp, prefix="fill-", suffix=".part")
        # Unbuffered, so readers tailing the temp file see every byte we count.
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.temp_path = Path(name)
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self, expected_sha256: str | None) -> str:
        """Publish the blob if it hashes to ``expected_sha256`` (when given); return its sha256."""
        digest = self._hash.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            self.abort()
            raise HashMismatch(f"expected sha256 {expected_sha256}, got {digest}")
        os.fsync(self._file.fileno())
        self._file.close()
        final = self._store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.temp_path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.temp_path.unlink(missing_ok=True)
