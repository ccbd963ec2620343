"""The blob store: files addressed by sha256, written atomically, never half-visible."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
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

    def delete_unless_in_use(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...


class LocalBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``; temp files in ``tmp`` on the same filesystem.

    Every handle ``open`` returns counts as "in use" until it is closed, so
    retention never deletes a blob this process is sending to a client.
    """

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self._lock = threading.Lock()
        self._in_use: Counter[str] = Counter()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob; FileNotFoundError if it is not (or no longer) stored."""
        # Under the lock: a blob is either opened before a deletion looks, or already gone.
        with self._lock:
            raw = io.FileIO(self.path(sha256), "r")
            self._in_use[sha256] += 1
        return _InUseHandle(raw, lambda: self._release(sha256))

    def _release(self, sha256: str) -> None:
        with self._lock:
            self._in_use[sha256] -= 1
            if self._in_use[sha256] <= 0:
                del self._in_use[sha256]

    def in_use(self, sha256: str) -> bool:
        """Whether a handle on the blob is open in this process (a download in progress)."""
        with self._lock:
            return self._in_use[sha256] > 0

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def delete_unless_in_use(self, sha256: str) -> bool:
        """Delete the blob unless it is being served; True when it is gone."""
        with self._lock:
            if self._in_use[sha256] > 0:
                return False
            self.path(sha256).unlink(missing_ok=True)
            return True

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def blobs(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Every file under the blob root as (name, path, stat), whatever its name says."""
        for dirpath, _dirs, names in os.walk(self.root):
            for name in sorted(names):
                path = Path(dirpath) / name
                try:
                    yield name, path, path.stat()
                except FileNotFoundError:
                    continue  # deleted while we walked


class _InUseHandle(io.BufferedReader):
    """A read handle on a blob that tells the store when it is closed (or collected)."""

    def __init__(self, raw: io.FileIO, release: Callable[[], None]) -> None:
        super().__init__(raw)
        self._release: Callable[[], None] | None = release

    def close(self) -> None:
        try:
            super().close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


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
