"""Cache fills: one upstream download per missing blob, read by every request waiting for it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pypicache.cache.claims import WAIT_POLL, FillClaims, database_guard
from pypicache.errors import (
    FillStopped,
    HashMismatch,
    PypicacheError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pypicache.storage.local import BlobReader, BlobStore, BlobWriter
from pypicache.upstream.client import CHUNK, UpstreamStream

log = logging.getLogger(__name__)

# Seconds a fill waits for another process's download of the same file before giving up:
# that process renews its claim while it downloads, so only a download this slow (or a
# claim that keeps changing hands) is given up on.
CLAIM_WAIT_LIMIT = 3600.0


@dataclass(frozen=True)
class Download:
    """One blob to bring into the store: a file or its core metadata, where from, what it is."""

    source: str  # whose row lists the file (an upstream's name, or the private projects')
    project: str
    filename: str
    metadata: bool  # the file's PEP 658 metadata rather than the file
    url: str
    sha256: str | None  # what the page advertises; the bytes must hash to it
    size: int | None

    @property
    def key(self) -> str:
        """One fill per key in a process, one claim per key in the deployment."""
        name = f"{self.source}:{self.project}/{self.filename}"
        return name + (".metadata" if self.metadata else "")


class Source(Protocol):
    """Where the bytes come from (the upstream)."""

    def open(self, url: str) -> UpstreamStream: ...

    def open_range(self, url: str, start: int, end: int, size: int) -> UpstreamStream | None:
        """Exactly bytes ``start``-``end`` of a file of ``size``, or None when not offered."""


class Ledger(Protocol):
    """Where a fill records what it stored, and learns what another process stored."""

    def recorded(self, download: Download) -> str | None:
        """The sha256 recorded as stored for the download's file (or metadata), if any."""

    def stored(self, download: Download, sha256: str, size: int, *, claim: bool = False) -> None:
        """The blob is in the store: record it, so pages and other processes know.

        With ``claim``, this process's claim on the download ends in the same write.
        """


class Fill:
    """Downloads one file into the blob store on its own thread.

    Requests never read the upstream themselves: they tail the temp file the
    download writes, so a client that goes away does not stop the fill, and
    any number of clients share one upstream request.  The last byte is held
    back from every reader until the whole file has hashed to the advertised
    sha256, so a wrong file never reaches a client looking complete.

    Across processes sharing a store, a claim in the database makes one of
    them download; the others wait until the blob is in the store (named by
    the advertised hash, or by the one the ledger recorded) and serve it from there.
    """

    def __init__(
        self,
        download: Download,
        *,
        source: Source,
        store: BlobStore,
        ledger: Ledger,
        claims: FillClaims,
        stop: threading.Event,
        read_timeout: float,
    ) -> None:
        self.key = download.key
        self.download = download
        self._source = source
        self._store = store
        self._ledger = ledger
        self._claims = claims
        self._expected_sha256 = download.sha256
        self._expected_size = download.size
        self._stop = stop
        self._read_timeout = read_timeout
        self._cond = threading.Condition()
        self._writer: BlobWriter | None = None
        self._started = False
        self._written = 0
        self.size: int | None = None
        self.sha256: str | None = None  # once stored
        self._verified: str | None = None  # once the bytes hashed right, stored or not yet
        self.error: PypicacheError | None = None

    # -- the download thread ---------------------------------------------------------------

    def run(self) -> None:
        try:
            with database_guard(f"claiming the download of {self.key}"):
                claimed = self._claim()
            if not claimed:
                return
            try:
                with self._source.open(self.download.url) as stream:
                    self._receive(stream)
            finally:
                self._claims.release(self.key)  # unless recording the file ended it
        except PypicacheError as exc:
            self.fail(exc)
        except Exception as exc:
            log.exception("fill of %s failed unexpectedly", self.key)
            self.fail(UpstreamUnavailable(f"download of {self.key} failed: {exc}"))

    def _claim(self) -> bool:
        """Claim the download; False when another process stored the blob meanwhile.

        Bounded: DatabaseUnavailable ends it at once, and past ``CLAIM_WAIT_LIMIT``
        it gives up; a round that found the claim gone but could not take it
        pauses before the next, so a claim changing hands never makes it spin.
        """
        deadline = time.monotonic() + CLAIM_WAIT_LIMIT
        while True:
            if self._claims.try_claim(self.key):
                # Looked again after claiming: the previous holder may have just finished.
                stored = self._find_stored()
                if stored is None:
                    return True
                self._claims.release(self.key)
                self._adopt(*stored)
                return False
            stored = self._find_stored()
            if stored is not None:
                self._adopt(*stored)
                return False
            # Another process downloads it: wait for its claim to end (stored, or failed).
            if not self._claims.wait_while_held(self.key, deadline, self._stop) or self._stop.wait(
                WAIT_POLL
            ):
                if self._stop.is_set():
                    raise FillStopped(f"{self.key}: server stopping")
                raise UpstreamTimeout(
                    f"{self.key}: another process has been downloading it for too long"
                )

    def _find_stored(self) -> tuple[str, int] | None:
        """The blob's sha256 and size when it is in the store already."""
        # Without an advertised hash, the row another process filled names the blob.
        digest = self._expected_sha256 or self._ledger.recorded(self.download)
        size = self._store.size(digest) if digest is not None else None
        return None if digest is None or size is None else (digest, size)

    def _adopt(self, sha256: str, size: int) -> None:
        """Finish with the blob another process stored."""
        try:
            self._ledger.stored(self.download, sha256, size)
        except Exception:
            log.exception("recording the cached file %s failed", self.key)
        with self._cond:
            self.sha256, self.size, self._written, self._started = sha256, size, size, True
            self._cond.notify_all()
        log.info("%s was stored by another process (sha256 %s)", self.key, sha256)

    def _receive(self, stream: UpstreamStream) -> None:
        size = self._expected_size if self._expected_size is not None else stream.size
        if None not in (self._expected_size, stream.size) and self._expected_size != stream.size:
            raise HashMismatch(
                f"{self.key}: upstream sends {stream.size} bytes, "
                f"its page says {self._expected_size}"
            )
        writer = self._store.writer()
        with self._cond:
            self._writer, self.size, self._started = writer, size, True
            self._cond.notify_all()
        try:
            for chunk in stream.iter_chunks():
                if self._stop.is_set():
                    raise FillStopped(f"{self.key}: server stopping")
                writer.write(chunk)
                if size is not None and writer.size > size:
                    raise HashMismatch(f"{self.key}: upstream sent more than {size} bytes")
                with self._cond:
                    self._written = writer.size
                    self._cond.notify_all()
            if size is not None and writer.size != size:
                raise UpstreamUnavailable(
                    f"{self.key}: upstream sent {writer.size} of {size} bytes"
                )
            # Readers take the bytes once they hashed right and were read back as written;
            # making them durable, publishing and recording them (2 ms of a small file's
            # 5) is then no longer a client's wait.
            verified = writer.verify(self._expected_sha256)
            with self._cond:
                self._verified = verified
                self._cond.notify_all()
            sha256 = writer.commit(self._expected_sha256)
        except BaseException:
            writer.abort()
            raise
        try:
            self._ledger.stored(self.download, sha256, writer.size, claim=True)
        except Exception:
            # The blob is stored and correct; only the bookkeeping failed.
            log.exception("recording the cached file %s failed", self.key)
        with self._cond:
            self.sha256 = sha256
            self.size = writer.size
            self._written = writer.size
            self._cond.notify_all()
        log.info("cached %s (%d bytes, sha256 %s)", self.key, writer.size, sha256)

    def fail(self, exc: PypicacheError) -> None:
        if isinstance(exc, HashMismatch):
            log.error("hash mismatch, nothing stored: %s", exc)
        else:
            log.warning("fill failed, nothing stored: %s", exc)
        with self._cond:
            self.error = exc
            self._cond.notify_all()

    # -- readers ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.sha256 is not None or self.error is not None

    @property
    def verified(self) -> bool:
        """Whether every byte is here and hashed right (stored, or still being stored)."""
        return self._verified is not None or self.sha256 is not None

    def wait_started(self) -> int | None:
        """Block until the upstream answered; return the size to announce to the client."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._started or self.done, self._read_timeout):
                raise UpstreamTimeout(f"upstream did not answer for {self.key}")
            self._raise_error()
            return self.size

    def wait_verified(self) -> int:
        """Block until the bytes hashed right (stored, or still being stored); their size."""
        with self._cond:
            self._wait_while_sending(lambda: self._verified is not None or self.done)
            if self._verified is None:
                self._raise_error()
            return self._written

    def wait_finished(self) -> str:
        """Block until the file is stored; return its sha256."""
        with self._cond:
            self._wait_while_sending(lambda: self.done)
            self._raise_error()
            assert self.sha256 is not None
            return self.sha256

    def _wait_while_sending(self, ready: Callable[[], bool]) -> None:
        """Hold the lock; wait until ``ready()``, as long as the upstream keeps sending."""
        while not ready():
            written = self._written
            if not self._cond.wait_for(
                lambda seen=written: ready() or self._written != seen, self._read_timeout
            ):
                raise UpstreamTimeout(f"upstream stalled sending {self.key}")

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes as they arrive; raises if the download turns out bad."""
        self.wait_started()
        handle = self._open_reader()
        try:
            position = 0
            while True:
                with self._cond:
                    limit = self._wait_for_data(position)
                if limit is None:
                    return
                data = handle.read(min(limit - position, CHUNK))
                if not data:
                    raise UpstreamUnavailable(f"{self.key}: temp file shorter than expected")
                position += len(data)
                yield data
        finally:
            handle.close()

    def _wait_for_data(self, position: int) -> int | None:
        """Hold the lock; wait until bytes beyond ``position`` may be sent (None: all sent)."""
        while True:
            if self.sha256 is not None or self._verified is not None:
                # All of it; an error in storing it after that is no reader's.
                return None if position >= self._written else self._written
            self._raise_error()
            limit = self._written - 1  # the held-back byte
            if limit > position:
                return limit
            written = self._written
            if not self._cond.wait_for(
                lambda seen=written: self.done or self._written != seen, self._read_timeout
            ):
                raise UpstreamTimeout(f"upstream stalled sending {self.key}")

    def _open_reader(self) -> BinaryIO | BlobReader:
        with self._cond:
            self._raise_error()
            committed = self.sha256
            temp_path = self._writer.temp_path if self._writer else None
        if committed is None and temp_path is not None:
            try:
                return Path(temp_path).open("rb", buffering=0)
            except FileNotFoundError:
                pass  # committed or aborted just now: the state says which
        return self._store.open(self.wait_finished())

    def _raise_error(self) -> None:
        if self.error is not None:
            raise type(self.error)(str(self.error))


class FillRegistry:
    """At most one fill per key in this process; stoppable as a whole.

    ``source_for`` says where a project's files come from; without a source (an index
    that follows no upstream) nothing can be filled.
    """

    def __init__(
        self,
        source_for: Callable[[str], Source | None],
        store: BlobStore,
        ledger: Ledger,
        claims: FillClaims,
        read_timeout: float,
    ) -> None:
        self._source_for = source_for
        self._store = store
        self._ledger = ledger
        self._claims = claims
        self._read_timeout = read_timeout
        self._lock = threading.Lock()
        self._fills: dict[str, Fill] = {}
        self._threads: set[threading.Thread] = set()
        self._stop = threading.Event()

    def get_or_start(self, download: Download) -> Fill | None:
        """The running fill for the download, a new one, or None when the blob is stored.

        The store is asked under the registry lock, and a fill leaves the
        registry only after it committed, so a request can never miss both.
        """
        key = download.key
        with self._lock:
            fill = self._fills.get(key)
            if fill is not None and fill.error is None and fill.download.sha256 == download.sha256:
                return fill
            # A failed fill stays listed until its thread ends: a retry starts afresh; so
            # does a request for other bytes under the name (the page changed meanwhile).
            if download.sha256 is not None and self._store.exists(download.sha256):
                return None
            source = self._source_for(download.project)
            if source is None:
                raise UpstreamUnavailable(
                    f"{key} is not cached and there is no upstream to fetch it"
                )
            if self._stop.is_set():
                raise FillStopped("server stopping")
            fill = Fill(
                download,
                source=source,
                store=self._store,
                ledger=self._ledger,
                claims=self._claims,
                stop=self._stop,
                read_timeout=self._read_timeout,
            )
            thread = threading.Thread(
                target=self._run, args=(fill,), name=f"fill:{key}"[:60], daemon=True
            )
            self._fills[key] = fill
            self._threads.add(thread)
        # Outside the lock: a start waits for the new thread to run, and under load that
        # is a GIL hand-over every other request for a file would have queued behind.
        thread.start()
        return fill

    def open_range(self, download: Download, start: int, end: int) -> UpstreamStream | None:
        """Bytes ``start``-``end`` (inclusive) of the download's file, straight from the upstream.

        For a client that wants only part of a file whose fill is under way: the fill
        stays the one full download, this only answers that client sooner.  None when the
        upstream will not give exactly that range (no range support, a wrong answer, a
        failure): the client then waits for the fill, as it did before ranges were asked
        for, and the fill reports any real upstream failure.
        """
        source = self._source_for(download.project)
        if source is None or download.size is None or self._stop.is_set():
            return None
        try:
            return source.open_range(download.url, start, end, download.size)
        except PypicacheError as exc:
            log.info("range of %s not fetched, waiting for the whole file: %s", download.key, exc)
            return None

    def _run(self, fill: Fill) -> None:
        try:
            if self._stop.is_set():  # stopped between being registered and starting
                fill.fail(FillStopped("server stopping"))
                return
            fill.run()
        finally:
            with self._lock:
                if self._fills.get(fill.key) is fill:
                    del self._fills[fill.key]
                self._threads.discard(threading.current_thread())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every download (each aborts, nothing partial stays) and wait for them."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread.ident is not None:  # one not started yet sees the stop when it runs
                thread.join(timeout)
