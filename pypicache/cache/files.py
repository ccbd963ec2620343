"""The file cache: a distribution file or its metadata, from the store or filled from upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pypicache.cache.fill import Download, Fill, FillRegistry
from pypicache.errors import FileNotFound, UpstreamUnavailable
from pypicache.filefacts import FileFacts
from pypicache.storage.local import BlobReader, BlobStore
from pypicache.upstream.client import UpstreamStream

if TYPE_CHECKING:
    from pypicache.cache.index import CachedPage


class Pages(Protocol):
    """What the file cache needs of the page cache: the page that lists a file."""

    def project_page(self, name: str) -> CachedPage: ...


class Span(Protocol):
    """A single byte range of a file, ``start`` to ``end`` inclusive (the web's ByteRange)."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


METADATA_SUFFIX = ".metadata"
# The largest range of a file not cached yet that is asked of the upstream apart from its
# fill. Reading a wheel's metadata takes kilobytes; a bigger range (a resumed download)
# would be a second download of most of the file beside the fill, so it waits for the fill.
UPSTREAM_RANGE_LIMIT = 1 << 20


@dataclass(frozen=True)
class FileAnswer:
    """What a download gets: stored bytes, bytes as they arrive, a redirect, or only headers.

    Exactly one of ``handle`` (a stored blob), ``chunks`` (a fill's bytes, ``size``
    of them) or ``location`` (the object store's URL) is set, or none for a HEAD
    answered from the page alone.  ``sha256`` names the bytes (the ETag).  With
    ``span``, the chunks are only that range of the file (``facts.size`` bytes in all).
    """

    facts: FileFacts
    sha256: str | None
    handle: BlobReader | None = None
    chunks: Iterable[bytes] | None = None
    size: int | None = None
    location: str | None = None
    span: Span | None = None


class FileCache:
    """Finds a file on its project's page and serves it from the store, filling it on a miss."""

    def __init__(
        self,
        source: str,
        pages: Pages,
        store: BlobStore,
        fills: FillRegistry,
        record_use: Callable[[str], None] | None = None,
    ) -> None:
        self._source = source  # whose rows list the files
        self._pages = pages
        self._store = store
        self._fills = fills
        # Told the sha256 of every blob opened for serving (retention's recency).
        self._record_use = record_use

    def _locate(self, project: str, filename: str) -> FileFacts:
        facts = self._pages.project_page(project).page.files.get(filename)
        if facts is None:
            raise FileNotFound(f"{project} has no file {filename}")
        return facts

    def _open_stored(self, sha256: str | None) -> BlobReader | None:
        """The stored blob, or None when it is not in the store; opening it counts as a use."""
        if sha256 is None:
            return None
        try:
            handle = self._store.open(sha256)
        except FileNotFoundError:
            return None
        if self._record_use is not None:
            self._record_use(sha256)
        return handle

    def open(
        self,
        project: str,
        filename: str,
        *,
        head: bool,
        ranged: bool,
        note: Callable[[str, str], None],
        wanted_range: Callable[[FileFacts], Span | None] | None = None,
        admit: Callable[[FileFacts], None] | None = None,
    ) -> FileAnswer:
        """Serve ``filename`` (or its ``.metadata``): from the store, or filled from upstream.

        ``note(kind, "hit" | "miss")`` is told as soon as the store has been looked at,
        so a download that then fails still counts as the miss it was.  A HEAD of a
        file the page gives a size for answers without fetching (uv probes range
        support that way).  A range (``ranged``) is served from the store once the
        whole file is there, except the one ``wanted_range`` names for a file not
        cached yet: that comes straight from the upstream while the fill runs.
        ``admit(facts)`` raises for a file the rules hold back, before anything is read.
        """
        if filename.endswith(METADATA_SUFFIX):
            facts = self._locate(project, filename.removesuffix(METADATA_SUFFIX))
            if admit is not None:
                admit(facts)
            handle = self._open_stored(facts.metadata_sha256)
            note("metadata", "hit" if handle is not None else "miss")
            if handle is None:
                return self._open_metadata(project, facts, ranged)
            return FileAnswer(facts, facts.metadata_sha256, handle=handle)
        facts = self._locate(project, filename)
        if admit is not None:
            admit(facts)
        handle = self._open_stored(facts.sha256)
        if handle is not None:
            note("file", "hit")
            if not head:
                assert facts.sha256 is not None  # a blob was opened by it
                location = self._store.download_url(facts.sha256, facts.filename)
                if location is not None:
                    handle.close()  # it only proved the blob is stored
                    return FileAnswer(facts, facts.sha256, location=location)
            return FileAnswer(facts, facts.sha256, handle=handle)
        if head and facts.size is not None:
            return FileAnswer(facts, facts.sha256, size=facts.size)
        fill = self._fill(project, facts)
        note("file", "miss" if fill is not None else "hit")
        if fill is None:  # stored by another request a moment ago
            return self._stored(facts, facts.sha256)
        if ranged and wanted_range is not None:
            answer = self._upstream_range(facts, fill, wanted_range(facts))
            if answer is not None:
                return answer
        size = fill.wait_started()
        if ranged:  # a range needs the whole file
            return self._stored(facts, fill.wait_finished())
        if size is None:  # no Content-Length to promise before all of it hashed right
            size = fill.wait_verified()
        return FileAnswer(facts, facts.sha256, chunks=fill.chunks(), size=size)

    def _upstream_range(self, facts: FileFacts, fill: Fill, span: Span | None) -> FileAnswer | None:
        """The span from the upstream while the fill runs; None: wait for the fill instead.

        uv reads a wheel's last bytes before it decides to download it: waiting for the
        whole file would make that first read as slow as the download.  The upstream's
        answer is checked to be exactly this range of a file of the page's size; the
        fill goes on regardless and is what the cache keeps, once its hash matched.
        """
        if span is None or fill.done or fill.verified or facts.size is None:
            return None
        if not 0 <= span.start <= span.end < facts.size:
            return None
        if span.end - span.start + 1 > UPSTREAM_RANGE_LIMIT:
            return None
        stream = self._fills.open_range(fill.download, span.start, span.end)
        if stream is None:
            return None
        length = span.end - span.start + 1
        return FileAnswer(facts, facts.sha256, chunks=_Body(stream), size=length, span=span)

    def _stored(self, facts: FileFacts, sha256: str | None) -> FileAnswer:
        handle = self._open_stored(sha256)
        if handle is None:
            raise FileNotFound(f"{facts.filename} vanished from the store")
        return FileAnswer(facts, sha256, handle=handle)

    def _fill(self, project: str, facts: FileFacts) -> Fill | None:
        """The download bringing the file into the store (None: it is stored already)."""
        return self._fills.get_or_start(
            Download(
                self._source,
                project,
                facts.filename,
                False,
                _url(facts),
                facts.sha256,
                facts.size,
            )
        )

    def _open_metadata(self, project: str, facts: FileFacts, ranged: bool) -> FileAnswer:
        """The file's core metadata (PEP 658), fetched from the upstream on first use."""
        if not facts.has_metadata:
            raise FileNotFound(f"{facts.filename} has no metadata file")
        url = _url(facts) + METADATA_SUFFIX
        fill = self._fills.get_or_start(
            Download(self._source, project, facts.filename, True, url, facts.metadata_sha256, None)
        )
        if fill is not None and not ranged:
            size = fill.wait_verified()  # its size, which no page gives
            return FileAnswer(facts, facts.metadata_sha256, chunks=fill.chunks(), size=size)
        sha256 = fill.wait_finished() if fill is not None else facts.metadata_sha256
        stored = self._open_stored(sha256)
        if stored is None:
            raise FileNotFound(f"metadata of {facts.filename} vanished from the store")
        return FileAnswer(facts, facts.metadata_sha256, handle=stored)


class _Body:
    """An upstream stream as a response body: closing it closes the upstream's answer.

    The server closes the body it was given even when it never read it (a client gone
    before the first byte), which a generator's ``finally`` would not see.
    """

    def __init__(self, stream: UpstreamStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        return self._stream.iter_chunks()

    def close(self) -> None:
        self._stream.close()


def _url(facts: FileFacts) -> str:
    if facts.upstream_url is None:
        raise UpstreamUnavailable(
            f"{facts.filename} is not cached and there is no upstream to fetch it"
        )
    return facts.upstream_url
