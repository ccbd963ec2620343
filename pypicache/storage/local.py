"""The blob store: files addressed by sha256, written atomically, never half-visible."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pypicache.digests import checked_sha256, is_sha256
from pypicache.errors import (
    HashMismatch,
    SettingsError,
    StorageFull,
    StorageUnavailable,
)
from pypicache.settings import BOTO3_MISSING

if TYPE_CHECKING:
    from types import TracebackType

    from pypicache.settings import Settings

log = logging.getLogger(__name__)


class BlobReader(Protocol):
    """A read handle on a stored blob; ``size`` is known before the first byte is read."""

    size: int

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobReader: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    """One entry of a store's listing, whether or not it is named and placed like a blob."""

    name: str  # the last part of its path or key
    location: str  # its path (local store) or key (object store)
    size: int
    mtime: float  # seconds since the epoch


class BlobWriter(Protocol):
    """A blob being written: hashed as it grows, published only by ``commit``."""

    temp_path: Path
    size: int

    def write(self, chunk: bytes) -> None: ...

    def verify(self, expected_sha256: str | None) -> str: ...

    def commit(self, expected_sha256: str | None) -> str: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """What the app and the admin commands need of a store, whichever backend holds it."""

    tmp: Path  # where writers keep partial files, local in every backend

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BlobReader: ...

    def writer(self) -> BlobWriter: ...

    def delete(self, sha256: str) -> None: ...

    def delete_unless_in_use(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...

    def download_url(self, sha256: str, filename: str) -> str | None:
        """Where a client may fetch the blob itself (None: the app sends it)."""
        ...

    # -- for verify: the store as it is, not as the database expects it ---------------------

    def describe(self) -> str: ...

    def objects(self) -> Iterator[StoredObject]: ...

    def location(self, sha256: str) -> str: ...

    def open_location(self, location: str) -> BlobReader: ...

    def delete_location(self, location: str) -> None: ...

    def set_aside(self, sha256: str, target: Path) -> bool: ...

    def stale_uploads(self, started_before: float) -> list[StoredObject]:
        """Unfinished uploads older than that (a crashed writer's); not the temp files."""
        ...

    def abort_upload(self, location: str) -> None: ...


def make_store(settings: Settings) -> BlobStore:
    """The configured backend: files under the data dir, or an S3 bucket."""
    if settings.s3_bucket is None:
        return LocalBlobStore(settings.blob_dir, settings.tmp_dir)
    try:
        from pypicache.storage.s3 import S3BlobStore
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in ("boto3", "botocore", "s3transfer"):
            raise SettingsError(BOTO3_MISSING) from None
        raise
    return S3BlobStore(
        settings.s3_bucket,
        settings.s3_prefix,
        settings.tmp_dir,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        redirect=settings.storage_redirect,
    )


def refused(sha256: str, action: str) -> None:
    """Log that the store was asked to ``action`` a blob name that is no digest (never done)."""
    log.error("blob store: refused to %s %r: not a sha256 hex digest", action, sha256[:100])


def not_stored(sha256: str) -> FileNotFoundError:
    """What ``open`` raises for a name that is no digest: such a blob is never stored."""
    refused(sha256, "open")
    return FileNotFoundError(errno.ENOENT, "not a sha256 hex digest", sha256[:100])


class InUse:
    """The blobs this process is sending, so retention never deletes one under a reader.

    A reader is counted (under ``lock``) before the blob is opened, and a deletion
    looks and deletes under ``lock``: a blob is either counted before a deletion
    looks at it, or already gone when it is opened.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, sha256: str) -> None:
        """Count one more reader; the caller holds ``lock``."""
        self._counts[sha256] += 1

    def release(self, sha256: str) -> None:
        with self.lock:
            self._counts[sha256] -= 1
            if self._counts[sha256] <= 0:
                del self._counts[sha256]

    def busy(self, sha256: str) -> bool:
        """Whether a reader is open; the caller holds ``lock``."""
        return self._counts[sha256] > 0


class LocalBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``; temp files in ``tmp`` on the same filesystem.

    Every handle ``open`` returns counts as "in use" until it is closed, so
    retention never deletes a blob this process is sending to a client.
    """

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self._in_use = InUse()
        self._root = os.fspath(root)

    def path(self, sha256: str) -> Path:
        """Where blob ``sha256`` lives; InvalidDigest unless it is a digest, so never elsewhere."""
        return Path(self._location(sha256))

    def _location(self, sha256: str) -> str:
        # A string, not a Path: three joins of pathlib were a seventh of a hot download.
        checked_sha256(sha256)
        return os.path.join(self._root, sha256[:2], sha256[2:4], sha256)

    def exists(self, sha256: str) -> bool:
        if not is_sha256(sha256):
            refused(sha256, "look up")
            return False
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> BlobReader:
        """Open a stored blob; FileNotFoundError if it is not (or no longer) stored."""
        if not is_sha256(sha256):
            raise not_stored(sha256)
        # Counted before it is opened, so a deletion deciding meanwhile sees it in use, and
        # the lock is not held over the open: the server's I/O thread takes it to release.
        with self._in_use.lock:
            self._in_use.add(sha256)
        try:
            raw = io.FileIO(self._location(sha256), "r")
        except BaseException:
            self._in_use.release(sha256)
            raise
        return _InUseHandle(raw, lambda: self._in_use.release(sha256))

    def in_use(self, sha256: str) -> bool:
        """Whether a handle on the blob is open in this process (a download in progress)."""
        with self._in_use.lock:
            return self._in_use.busy(sha256)

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def delete(self, sha256: str) -> None:
        if not is_sha256(sha256):
            refused(sha256, "delete")
            return
        self.path(sha256).unlink(missing_ok=True)

    def delete_unless_in_use(self, sha256: str) -> bool:
        """Delete the blob unless it is being served; True when it is gone."""
        if not is_sha256(sha256):
            refused(sha256, "delete")
            return True  # no blob has that name
        with self._in_use.lock:
            if self._in_use.busy(sha256):
                return False
            self.path(sha256).unlink(missing_ok=True)
            return True

    def size(self, sha256: str) -> int | None:
        if not is_sha256(sha256):
            refused(sha256, "look up")
            return None
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def download_url(self, sha256: str, filename: str) -> str | None:
        return None  # nobody but this app can read the data dir

    def describe(self) -> str:
        return str(self.root)

    def objects(self) -> Iterator[StoredObject]:
        """Every file under the blob root, whatever its name says."""
        for dirpath, _dirs, names in os.walk(self.root):
            for name in sorted(names):
                path = Path(dirpath) / name
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue  # deleted while we walked
                yield StoredObject(name, str(path), info.st_size, info.st_mtime)

    def location(self, sha256: str) -> str:
        return str(self.path(sha256))

    def open_location(self, location: str) -> BlobReader:
        return _FileReader(io.FileIO(location, "r"))

    def delete_location(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)

    def set_aside(self, sha256: str, target: Path) -> bool:
        """Move the blob out of the store to ``target``; False when it is not stored."""
        if not is_sha256(sha256):
            refused(sha256, "move")
            return False
        try:
            os.replace(self.path(sha256), target)
        except FileNotFoundError:
            return False
        return True

    def stale_uploads(self, started_before: float) -> list[StoredObject]:
        return []  # a partial write here is a temp file, and verify looks at those

    def abort_upload(self, location: str) -> None:
        raise NotImplementedError("the local store has no uploads")


class _FileReader(io.BufferedReader):
    """A read handle on a blob file that knows its size."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw)
        self.size = os.fstat(raw.fileno()).st_size


class _InUseHandle(_FileReader):
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


# The errors of a full disk or quota, and of a file grown past what the filesystem allows.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_error(exc: OSError, doing: str) -> StorageUnavailable:
    """The domain error for an OSError of the blob store: StorageFull when space ran out."""
    reason = exc.strerror or str(exc)
    if exc.errno in FULL_ERRNOS:
        return StorageFull(f"insufficient storage: {doing}: {reason}")
    return StorageUnavailable(f"blob store failed: {doing}: {reason}")


def write_all(file: io.RawIOBase, chunk: bytes | memoryview) -> None:
    """Write every byte of ``chunk`` to an unbuffered file, however short each write is.

    A raw write may take only part of the chunk (a nearly full disk, a
    signal); the rest is written again until all is written.  A write that
    takes nothing means the disk is full; OSErrors are the caller's.
    """
    view = memoryview(chunk).cast("B")
    while view:
        written = file.write(view)
        if not written:  # 0 (or None: would block) is no progress at all
            raise OSError(errno.ENOSPC, "a write stored no bytes")
        view = view[written:]


class TempFileWriter:
    """A blob being written to a temp file in ``tmp``, hashed as it grows.

    Readers may tail ``temp_path`` while it grows; a backend's ``commit``
    publishes the file once ``checked_digest`` has accepted it and ``seal``
    has found on the disk what was read back.  Every failure of the filesystem is a
    StorageUnavailable (StorageFull when space ran out), with the temp file gone.
    """

    def __init__(self, tmp: Path) -> None:
        try:
            fd, name = tempfile.mkstemp(dir=tmp, prefix="fill-", suffix=".part")
        except OSError as exc:
            raise storage_error(exc, f"creating a temp file in {tmp}") from None
        # Unbuffered, so readers tailing the temp file see every byte we count.
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.temp_path = Path(name)
        self.size = 0
        self._hash = hashlib.sha256()
        self._on_disk = hashlib.sha256()  # of what reading each chunk back gave

    def write(self, chunk: bytes) -> None:
        try:
            write_all(self._file, chunk)
            # Read back at once, while the page cache holds it: reading a whole big file
            # back at the end held its last byte from the client for as long (200 MB:
            # 130 ms), and saw the same cached pages.
            back = os.pread(self._file.fileno(), len(chunk), self.size)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"writing {self.temp_path.name}") from None
        self._hash.update(chunk)
        self._on_disk.update(back)
        self.size += len(chunk)

    def checked_digest(self, expected_sha256: str | None) -> str:
        """The written bytes' sha256; HashMismatch (and the temp file gone) unless expected."""
        digest = self._hash.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            self.abort()
            raise HashMismatch(f"expected sha256 {expected_sha256}, got {digest}")
        return digest

    def verify(self, expected_sha256: str | None) -> str:
        """The sha256 of what was written, once it is ``expected_sha256`` (when given) and
        the temp file read back the same; HashMismatch or StorageUnavailable (the temp
        file gone) otherwise.  Nothing is durable or published yet: ``commit`` does that."""
        digest = self.checked_digest(expected_sha256)
        if self._on_disk.hexdigest() != digest:
            self.abort()
            raise StorageUnavailable(
                f"blob store failed: {self.temp_path.name} read back other bytes than were"
                f" written (sha256 {digest})"
            )
        return digest

    def seal(self, digest: str) -> None:
        """Flush the temp file to the disk, close it, and check it holds what was hashed.

        Every chunk was read back as it was written and hashed again, and the file's
        size is checked once it is on the disk, so a write the filesystem lost or cut
        short is never published under the hash of what was sent.
        """
        try:
            os.fsync(self._file.fileno())
            size = os.fstat(self._file.fileno()).st_size
            self._file.close()
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"flushing {self.temp_path.name}") from None
        on_disk = self._on_disk.hexdigest()
        if size != self.size or on_disk != digest:
            self.abort()
            raise StorageUnavailable(
                f"blob store failed: {self.temp_path.name} holds {size} bytes (read back:"
                f" sha256 {on_disk}) after writing {self.size} bytes with sha256 {digest}"
            )

    def abort(self) -> None:
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass  # unbuffered: nothing is lost that was not lost already
        self.temp_path.unlink(missing_ok=True)


class LocalBlobWriter(TempFileWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        super().__init__(store.tmp)
        self._store = store

    def commit(self, expected_sha256: str | None) -> str:
        """Publish the blob if it hashes to ``expected_sha256`` (when given); return its sha256.

        Published only once it is on the disk and read back whole; otherwise
        HashMismatch or StorageUnavailable (StorageFull) and nothing published.
        """
        digest = self.checked_digest(expected_sha256)
        self.seal(digest)
        final = self._store.path(digest)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.temp_path, final)
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"publishing blob {digest}") from None
        try:
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            # The blob holds the right bytes (and may be an older identical one another
            # file refers to, so it stays), but its rename may not survive a crash.
            raise storage_error(exc, f"flushing the directory of blob {digest}") from None
        return digest
