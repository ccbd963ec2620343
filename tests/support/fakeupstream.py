"""A fake upstream PyPI served over real HTTP on 127.0.0.1, with knobs to make it misbehave.

It keeps a Warehouse-like data model (projects, releases, files and a journal whose ids are the
serials), renders the Simple API pages the way Warehouse does, serves files at blake2b-hashed
paths, answers the three XML-RPC mirroring methods, and records every request it receives so
tests can prove what the cache under test did (and did not) fetch.
"""

from __future__ import annotations

import contextlib
import email.message
import email.parser
import email.utils
import hashlib
import html
import io
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
import xmlrpc.client
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self
from urllib.parse import quote, unquote, urlsplit
from xml.parsers.expat import ExpatError

from packaging.utils import parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from requests.structures import CaseInsensitiveDict

from tests.support.dists import Dist, make_large_wheel

log = logging.getLogger(__name__)

# The fake implements PEP 700 (versions, size, upload-time) but not project status markers,
# so it advertises 1.1: an index should only advertise what it implements.
API_VERSION = "1.1"
TEXT_HTML = "text/html"
V1_HTML = "application/vnd.pypi.simple.v1+html"
V1_JSON = "application/vnd.pypi.simple.v1+json"
# Warehouse's offer order; WebOb keeps it for ties, which is why `*/*` yields text/html.
_OFFERS = (TEXT_HTML, V1_HTML, V1_JSON)

SIMPLE_CACHE_CONTROL = "max-age=600, public"
FILE_CACHE_CONTROL = "max-age=365000000, immutable, public"
RPC_PATHS = frozenset({"/pypi", "/pypi/", "/RPC2"})
RATE_LIMIT_FAULT = (
    -32500,
    "HTTPTooManyRequests: The action could not be performed because there were too many "
    "requests by the client. Limit may reset in 1 seconds.",
)
OWNER = "admin"

_CHUNK = 64 * 1024
_REASONS = {
    301: "Moved Permanently",
    304: "Not Modified",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_key(version: str) -> tuple[int, Version | str]:
    # Legacy (non PEP 440) versions sort before every valid one, as in Warehouse.
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


# --------------------------------------------------------------------------------------------
# Data model (Warehouse's, reduced to what an index page and the changelog need)


@dataclass(frozen=True)
class FileRecord:
    """One distribution file as upstream lists it."""

    project: str  # normalized name
    version: str
    filename: str
    content: bytes = field(repr=False)
    sha256: str
    blake2b_256: str
    upload_time: datetime
    requires_python: str | None
    metadata: bytes | None = field(repr=False)
    pyversion: str  # `py3`, `cp312`, ... or `source`; what the journal's "add ... file" names

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()

    @property
    def path(self) -> str:
        """URL path of the file: blake2b-hashed like PyPI's file host, ending in the filename."""
        b2 = self.blake2b_256
        return f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{quote(self.filename)}"


@dataclass(eq=False)
class Release:
    version: str
    yanked: bool = False
    yanked_reason: str = ""
    files: dict[str, FileRecord] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Project:
    name: str  # display name
    normalized: str
    last_serial: int = 0
    status: str = "active"
    releases: dict[str, Release] = field(default_factory=dict)


class JournalEntry(NamedTuple):
    """A row of Warehouse's journals table; `serial` is its id."""

    serial: int
    name: str
    version: str | None
    action: str
    timestamp: datetime


@dataclass(frozen=True)
class RequestRecord:
    """What the fake received; `time` is time.monotonic() so spacing can be asserted."""

    method: str
    path: str  # including the query string
    headers: CaseInsensitiveDict[str]
    time: float
    rpc_method: str | None = None


@dataclass(frozen=True)
class _Page:
    body: bytes
    etag: str
    serial: int


@dataclass(frozen=True)
class _Blob:
    content: bytes
    etag: str
    last_modified: str


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | memoryview = b""
    truncate_at: int | None = None
    paced: bool = False


@dataclass
class _Failure:
    prefix: str
    status: int
    remaining: int
    headers: dict[str, str]


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its open connections, so stop() can cut them.

    Without that, a client's pooled keep-alive connection would go on being served by its
    handler thread after the fake was "stopped", and a dead upstream could not be simulated.
    """

    daemon_threads = True
    block_on_close = False  # we join handler threads ourselves, with a deadline
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeUpstream) -> None:
        self.fake = fake
        self._active: dict[socket.socket, threading.Thread] = {}
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fakeupstream-{client_address[1]}",
            daemon=True,
        )
        with self._active_lock:
            self._active[request] = thread
        thread.start()

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._active_lock:
            self._active.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self, timeout: float = 5.0) -> None:
        with self._active_lock:
            active = list(self._active.items())
        for sock, _ in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # the client hung up, or stop() cut the connection: both are expected
        log.exception("fake upstream failed while handling a request")
        if error is not None:
            self.fake.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 300  # idle keep-alive connections give up eventually; stop() cuts them sooner
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every small response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log on FakeUpstream is the record; stderr noise helps nobody

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # we don't read chunked bodies; don't reuse the stream
        response = self.server.fake._respond(self.command, self.path, self.headers, body)
        self._send(response)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # BaseHTTPRequestHandler dispatches to `do_<METHOD>`; every method (even PURGE) goes
        # through _serve, which answers 405 where a method makes no sense.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status, _REASONS.get(response.status))
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command == "HEAD" or response.status == 304:
            return
        body = memoryview(response.body)
        if response.truncate_at is not None:
            body = body[: response.truncate_at]
            self.close_connection = True
        rate = self.server.fake.throttle_bytes_per_second if response.paced else None
        if not rate:
            self.wfile.write(body)
        else:
            # Pace against a schedule rather than sleeping per chunk, so rounding and
            # scheduling delays don't accumulate over a long transfer.
            start = time.monotonic()
            for offset in range(0, len(body), _CHUNK):
                self.wfile.write(body[offset : offset + _CHUNK])
                sent = min(offset + _CHUNK, len(body))
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        if response.truncate_at is not None:
            self.wfile.flush()


# --------------------------------------------------------------------------------------------
# The fake


class FakeUpstream:
    """A fake PyPI: Simple API (HTML + JSON), files, XML-RPC changelog, and fault knobs."""

    def __init__(
        self,
        *,
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: serve HTTPS with this server-side context."""
        self._port = port
        self._tls = tls
        self._clock = clock or (lambda: datetime.now(UTC))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

        self._projects: dict[str, Project] = {}
        self._files: dict[str, FileRecord] = {}  # current files by filename
        self._used_filenames: set[str] = set()
        self._blobs: dict[str, _Blob] = {}  # by URL path; never removed, like PyPI's store
        self._journal: list[JournalEntry] = []
        self._bulk_counter = 0
        self._root_cache: dict[str, _Page] = {}
        self._page_cache: dict[tuple[str, str], _Page] = {}
        self._stale: dict[str, dict[str, _Page] | None] = {}
        # PEP 740 provenance documents by filename, served under /integrity/ as PyPI does.
        self._provenance: dict[str, bytes] = {}

        self.requests: list[RequestRecord] = []
        self.errors: list[BaseException] = []  # unexpected exceptions inside handlers

        # Knobs; plain attributes are safe to flip from a test thread at any time.
        self.changelog_page_size = 50000
        self.xmlrpc_fault: tuple[int, str] | None = None
        self.down = False
        self.html_only = False
        self.omit_serial = False
        # A CDN node that never answers 304 for pages: every request gets the whole body.
        self.ignore_page_etags = False
        self.throttle_bytes_per_second: float | None = None
        self.allow_filename_reuse = False
        # Answer every file request whole (200), as an origin without range support does.
        self.ignore_ranges = False
        # Page ETags of 300+ characters, as some proxies and object stores send.
        self.long_etags = False
        self._failures: list[_Failure] = []
        self._wrong: dict[str, bytes] = {}
        self._truncate: dict[str, int] = {}
        self._stalls: list[tuple[str, float | None]] = []
        self._stall_event: threading.Event | None = None
        self._stalled = 0
        self._stall_cond = threading.Condition()

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; after a stop() it comes back on the same port (same URLs)."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), self)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fakeupstream",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections; stalled handlers are released first."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        self.release()
        server.shutdown()
        thread.join()
        server.close_connections()
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeUpstream has no port until start() has been called")
        return self._port

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def simple_url(self) -> str:
        return self.base_url + "/simple/"

    @property
    def xmlrpc_url(self) -> str:
        return self.base_url + "/pypi"

    @property
    def serial(self) -> int:
        """The global serial: the id of the last journal entry."""
        with self._lock:
            return len(self._journal)

    # ---- inspection -------------------------------------------------------------------------

    @property
    def journal(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._journal)

    def project(self, name: str) -> Project | None:
        with self._lock:
            return self._projects.get(normalize(name))

    def file(self, filename: str) -> FileRecord:
        with self._lock:
            return self._files[filename]

    def file_url(self, filename: str) -> str:
        return self.base_url + self.file(filename).path

    def find(
        self,
        method: str | None = None,
        path_prefix: str | None = None,
        path_contains: str | None = None,
    ) -> list[RequestRecord]:
        with self._lock:
            records = list(self.requests)
        return [
            r
            for r in records
            if (method is None or r.method == method.upper())
            and (path_prefix is None or r.path.startswith(path_prefix))
            and (path_contains is None or path_contains in r.path)
        ]

    def count(
        self,
        method: str | None = None,
        path_prefix: str | None = None,
        path_contains: str | None = None,
    ) -> int:
        return len(self.find(method, path_prefix, path_contains))

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # ---- mutations (each writes Warehouse's journal entries) --------------------------------

    def _write_journal(self, project: Project, version: str | None, action: str) -> None:
        serial = len(self._journal) + 1
        self._journal.append(JournalEntry(serial, project.name, version, action, self._clock()))
        project.last_serial = serial
        self._root_cache.clear()
        self._page_cache.clear()

    def _get_project(self, name: str) -> Project:
        project = self._projects.get(normalize(name))
        if project is None:
            raise KeyError(f"no project {name!r} on the fake upstream")
        return project

    def _get_release(self, name: str, version: str) -> tuple[Project, Release]:
        project = self._get_project(name)
        release = project.releases.get(version)
        if release is None:
            raise KeyError(f"no release {name} {version} on the fake upstream")
        return project, release

    def _add_file(self, display_name: str, rename: bool, record: FileRecord) -> FileRecord:
        with self._lock:
            if record.filename in self._files or (
                record.filename in self._used_filenames and not self.allow_filename_reuse
            ):
                # PyPI answers 400 "File already exists" and never lets a filename be reused.
                raise ValueError(f"{record.filename} was already uploaded")
            project = self._projects.get(record.project)
            if project is None:
                project = Project(display_name, record.project)
                self._projects[record.project] = project
                self._write_journal(project, None, "create")
                self._write_journal(project, None, f"add Owner {OWNER}")
            elif rename:
                project.name = display_name
            release = project.releases.get(record.version)
            if release is None:
                release = project.releases[record.version] = Release(record.version)
                self._write_journal(project, record.version, "new release")
            release.files[record.filename] = record
            self._files[record.filename] = record
            self._used_filenames.add(record.filename)
            self._store_blobs(record)
            self._write_journal(
                project, record.version, f"add {record.pyversion} file {record.filename}"
            )
            return record

    def _store_blobs(self, record: FileRecord) -> None:
        modified = email.utils.format_datetime(record.upload_time, usegmt=True)
        self._blobs[record.path] = _Blob(record.content, f'"{record.sha256}"', modified)
        if record.metadata is not None:
            self._blobs[record.path + ".metadata"] = _Blob(
                record.metadata, f'"{record.metadata_sha256}"', modified
            )

    def _record(
        self,
        *,
        project: str,
        version: str,
        filename: str,
        content: bytes,
        metadata: bytes | None,
        requires_python: str | None,
        upload_time: datetime | None,
        pyversion: str,
        sha256: str | None = None,
    ) -> FileRecord:
        # Hashing happens here, outside the lock: a 200 MB file takes a noticeable moment.
        return FileRecord(
            project=normalize(project),
            version=version,
            filename=filename,
            content=content,
            sha256=sha256 or hashlib.sha256(content).hexdigest(),
            blake2b_256=hashlib.blake2b(content, digest_size=32).hexdigest(),
            upload_time=_utc(upload_time or self._clock()),
            requires_python=requires_python,
            metadata=metadata,
            pyversion=pyversion,
        )

    def publish(
        self,
        dist: Dist,
        *,
        upload_time: datetime | None = None,
        display_name: str | None = None,
    ) -> FileRecord:
        """Upload a file built by tests.support.dists; the project is created if needed.

        `display_name` renames an existing project's display name (as a later upload spelled
        differently does on Warehouse); later journal entries carry the new name.
        """
        pyversion = "source" if dist.metadata is None else _wheel_pyversion(dist.filename)
        record = self._record(
            project=display_name or dist.name,
            version=dist.version,
            filename=dist.filename,
            content=dist.content,
            metadata=dist.metadata,
            requires_python=dist.requires_python,
            upload_time=upload_time,
            pyversion=pyversion,
            sha256=dist.sha256,
        )
        return self._add_file(display_name or dist.name, display_name is not None, record)

    def publish_file(
        self,
        filename: str,
        content: bytes,
        *,
        requires_python: str | None = None,
        upload_time: datetime | None = None,
    ) -> FileRecord:
        """Upload an arbitrary .whl or .tar.gz; name and version come from the filename."""
        metadata: bytes | None = None
        if filename.endswith(".whl"):
            name, parsed, _, _ = parse_wheel_filename(filename)
            metadata = _wheel_metadata(content)
            pyversion = _wheel_pyversion(filename)
        else:
            name, parsed = parse_sdist_filename(filename)
            pyversion = "source"
        display: str = name
        if metadata is not None:
            headers = email.parser.BytesHeaderParser().parsebytes(metadata)
            display = headers.get("Name") or display
            requires_python = requires_python or headers.get("Requires-Python")
        record = self._record(
            project=display,
            version=str(parsed),
            filename=filename,
            content=content,
            metadata=metadata,
            requires_python=requires_python,
            upload_time=upload_time,
            pyversion=pyversion,
        )
        return self._add_file(display, False, record)

    def load_directory(self, path: Path | str) -> list[FileRecord]:
        """Publish every wheel and sdist in a directory (e.g. real ones for a benchmark)."""
        files = sorted(Path(path).glob("*.whl")) + sorted(Path(path).glob("*.tar.gz"))
        return [self.publish_file(f.name, f.read_bytes()) for f in files]

    def large_file(self, name: str, version: str, size_bytes: int) -> FileRecord:
        """Publish a valid (but useless) wheel of exactly `size_bytes`, for throughput tests."""
        return self.publish(make_large_wheel(name, version, size_bytes))

    def replace_bytes(self, filename: str, new_content: bytes) -> FileRecord:
        """Give an existing file new bytes under the same name (pre-2015 PyPI could)."""
        with self._lock:
            old = self._files[filename]
        new = self._record(
            project=old.project,
            version=old.version,
            filename=filename,
            content=new_content,
            metadata=(_wheel_metadata(new_content) if filename.endswith(".whl") else None)
            or old.metadata,
            requires_python=old.requires_python,
            upload_time=None,
            pyversion=old.pyversion,
        )
        with self._lock:
            project, release = self._get_release(old.project, old.version)
            release.files[filename] = new
            self._files[filename] = new
            self._store_blobs(new)
            self._write_journal(project, old.version, f"remove file {filename}")
            self._write_journal(project, old.version, f"add {new.pyversion} file {filename}")
        return new

    def attest(self, filename: str, document: object) -> str:
        """Give a file a PEP 740 provenance document (an object to dump, or raw bytes to
        serve as they are); its pages link it from now on.  Returns its URL.

        PyPI writes no journal entry for it: it comes with the upload.
        """
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        with self._lock:
            record = self._files[filename]
            self._provenance[filename] = body
            self._page_cache.clear()
        return self.base_url + _provenance_path(record)

    def provenance_url(self, filename: str) -> str:
        return self.base_url + _provenance_path(self.file(filename))

    def yank(self, project: str, version: str, reason: str | None = None) -> None:
        with self._lock:
            proj, release = self._get_release(project, version)
            release.yanked, release.yanked_reason = True, reason or ""
            self._write_journal(proj, version, "yank release")

    def unyank(self, project: str, version: str) -> None:
        with self._lock:
            proj, release = self._get_release(project, version)
            release.yanked, release.yanked_reason = False, ""
            self._write_journal(proj, version, "unyank release")

    def delete_file(self, filename: str) -> None:
        """Remove a file from its release; its URL keeps answering (blobs are never GC'd)."""
        with self._lock:
            record = self._files.pop(filename)
            project, release = self._get_release(record.project, record.version)
            del release.files[filename]
            self._write_journal(project, record.version, f"remove file {filename}")

    def delete_release(self, project: str, version: str) -> None:
        with self._lock:
            proj, release = self._get_release(project, version)
            for filename in release.files:
                self._files.pop(filename, None)
            del proj.releases[version]
            self._write_journal(proj, version, "remove release")

    def delete_project(self, name: str) -> None:
        with self._lock:
            project = self._get_project(name)
            for release in project.releases.values():
                for filename in release.files:
                    self._files.pop(filename, None)
            del self._projects[project.normalized]
            self._write_journal(project, None, "remove project")

    def add_bulk_projects(self, n: int, prefix: str = "bulkproj") -> list[str]:
        """Register `n` file-less projects cheaply, to make the root list realistically big."""
        with self._lock:
            start = self._bulk_counter
            self._bulk_counter += n
            now = self._clock()
            journal = self._journal
            projects = self._projects
            names = [f"{prefix}{i}" for i in range(start, start + n)]
            for name in names:
                norm = normalize(name)
                if norm in projects:
                    continue
                serial = len(journal) + 2
                journal.append(JournalEntry(serial - 1, name, None, "create", now))
                journal.append(JournalEntry(serial, name, None, f"add Owner {OWNER}", now))
                projects[norm] = Project(name, norm, serial)
            self._root_cache.clear()
            self._page_cache.clear()
            return names

    # ---- fault knobs ------------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests under `path_prefix` with `status` (and headers)."""
        with self._lock:
            self._failures.append(_Failure(path_prefix, status, times, dict(headers or {})))

    def stall(self, path_prefix: str, seconds: float | None = None) -> None:
        """Hold requests under `path_prefix` before any header is sent.

        Until release() (or stop()), or for `seconds` per request when given: a slow first
        byte, as when a CDN waits for a sick origin.
        """
        with self._lock:
            if self._stall_event is None:
                self._stall_event = threading.Event()
            self._stalls.append((path_prefix, seconds))

    def release(self) -> None:
        """Let every stalled request go and stop stalling."""
        with self._lock:
            event, self._stall_event = self._stall_event, None
            self._stalls.clear()
        if event is not None:
            event.set()

    @property
    def stalled(self) -> int:
        """How many requests are being held right now."""
        with self._stall_cond:
            return self._stalled

    def wait_stalled(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until at least `count` requests are held; tests then know the race is set up."""
        with self._stall_cond:
            return self._stall_cond.wait_for(lambda: self._stalled >= count, timeout)

    def wrong_bytes(self, filename: str, content: bytes | None = None) -> None:
        """Serve other bytes for `filename` (or `filename.metadata`) than the listing hashes.

        By default the first byte is flipped: same length, different digest.
        """
        if content is None:
            with self._lock:
                blob = self._blob_by_filename(filename)
            content = bytes([blob.content[0] ^ 0xFF]) + blob.content[1:]
        with self._lock:
            self._wrong[filename] = content

    def truncate(self, filename: str, at: int) -> None:
        """Send the full Content-Length for `filename` but hang up after `at` body bytes."""
        with self._lock:
            self._truncate[filename] = at

    def stale(self, name: str, on: bool = True) -> None:
        """CDN-stale mode: keep serving /simple/<name>/ exactly as it is at this moment.

        Body, ETag and X-PyPI-Last-Serial are frozen (a 404 stays a 404) until switched off,
        while the journal and XML-RPC move on: the changelog is "ahead" of the pages.
        """
        norm = normalize(name)
        with self._lock:
            if not on:
                self._stale.pop(norm, None)
                return
            project = self._projects.get(norm)
            self._stale[norm] = (
                None
                if project is None
                else {kind: self._detail_page(project, kind) for kind in ("html", "json")}
            )

    def reset_faults(self) -> None:
        """Switch every misbehaviour off (stalled requests are released)."""
        self.release()
        with self._lock:
            self._failures.clear()
            self._wrong.clear()
            self._truncate.clear()
            self._stale.clear()
        self.down = self.html_only = self.omit_serial = self.ignore_ranges = False
        self.ignore_page_etags = False
        self.throttle_bytes_per_second = None
        self.xmlrpc_fault = None

    def _blob_by_filename(self, filename: str) -> _Blob:
        base, is_metadata = filename, False
        if filename.endswith(".metadata"):
            base, is_metadata = filename.removesuffix(".metadata"), True
        path = self._files[base].path + (".metadata" if is_metadata else "")
        return self._blobs[path]

    # ---- rendering ----------------------------------------------------------------------------

    def _root_page(self, kind: str) -> _Page:
        page = self._root_cache.get(kind)
        if page is not None:
            return page
        serial = len(self._journal)
        projects = sorted(self._projects.values(), key=lambda p: p.normalized)
        if kind == "json":
            body = json.dumps(
                {
                    "meta": {"api-version": API_VERSION, "_last-serial": serial},
                    "projects": [{"name": p.name, "_last-serial": p.last_serial} for p in projects],
                }
            ).encode()
        else:
            escape = html.escape
            anchors = "".join(
                f'    <a href="/simple/{p.normalized}/">{escape(p.name)}</a>\n' for p in projects
            )
            body = (
                "<!DOCTYPE html>\n<html>\n  <head>\n"
                f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
                "    <title>Simple index</title>\n  </head>\n  <body>\n"
                f"{anchors}  </body>\n</html>\n"
            ).encode()
        page = self._root_cache[kind] = _Page(body, self._page_etag(body), serial)
        return page

    def _detail_page(self, project: Project, kind: str) -> _Page:
        key = (project.normalized, kind)
        page = self._page_cache.get(key)
        if page is not None:
            return page
        files = sorted(
            (
                (release, record)
                for release in project.releases.values()
                for record in release.files.values()
            ),
            key=lambda pair: (_version_key(pair[1].version), pair[1].filename),
        )
        render = _render_json if kind == "json" else _render_html
        attested = {name for _, record in files if (name := record.filename) in self._provenance}
        body = render(project, files, self.base_url, attested)
        page = self._page_cache[key] = _Page(body, self._page_etag(body), project.last_serial)
        return page

    def _page_etag(self, body: bytes) -> str:
        if self.long_etags:
            return '"' + hashlib.sha512(body).hexdigest() * 2 + "-" + "v" * 50 + '"'
        return _etag(body)

    # ---- request handling ---------------------------------------------------------------------

    def _respond(
        self, method: str, raw_path: str, headers: email.message.Message, body: bytes
    ) -> _Response:
        header_map: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers.items())
        path = unquote(urlsplit(raw_path).path)
        rpc_method = _peek_rpc_method(body) if path in RPC_PATHS and method == "POST" else None
        with self._lock:
            self.requests.append(
                RequestRecord(method, raw_path, header_map, time.monotonic(), rpc_method)
            )
        self._maybe_stall(path)
        if self.down:
            return _text(503, "upstream is down")
        failure = self._take_failure(path)
        if failure is not None:
            response = _text(failure.status, f"injected failure {failure.status}")
            response.headers.extend(failure.headers.items())
            return response
        query = urlsplit(raw_path).query
        if path == "/simple":
            return _redirect("/simple/", query)
        if path == "/simple/":
            return self._serve_root(method, header_map)
        if path.startswith("/simple/"):
            rest = path[len("/simple/") :]
            if "/" not in rest:
                return _redirect(quote(path) + "/", query)
            if rest.count("/") == 1 and rest.endswith("/") and rest != "/":
                return self._serve_detail(method, rest[:-1], query, header_map)
            return _text(404, "not found")
        if path.startswith("/packages/"):
            return self._serve_file(method, path, header_map)
        if path.startswith("/integrity/"):
            return self._serve_provenance(method, path)
        if path in RPC_PATHS:
            return self._serve_xmlrpc(method, header_map, body)
        return _text(404, "not found")

    def _maybe_stall(self, path: str) -> None:
        with self._lock:
            matches = [seconds for prefix, seconds in self._stalls if path.startswith(prefix)]
            event = self._stall_event
        if not matches or event is None:
            return
        with self._stall_cond:
            self._stalled += 1
            self._stall_cond.notify_all()
        try:
            event.wait(matches[0])
        finally:
            with self._stall_cond:
                self._stalled -= 1
                self._stall_cond.notify_all()

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if path.startswith(failure.prefix):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _negotiate(self, accept: str | None) -> str:
        offers = (TEXT_HTML, V1_HTML) if self.html_only else _OFFERS
        return negotiate(accept, offers)

    def _simple_headers(self, content_type: str, page: _Page) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", content_type),
            ("Vary", "Accept"),
            ("ETag", page.etag),
            ("Cache-Control", SIMPLE_CACHE_CONTROL),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", "X-PyPI-Last-Serial"),
        ]
        if not self.omit_serial:
            headers.append(("X-PyPI-Last-Serial", str(page.serial)))
        return headers

    def _simple_response(
        self, content_type: str, page: _Page, headers: CaseInsensitiveDict[str]
    ) -> _Response:
        response_headers = self._simple_headers(content_type, page)
        if not self.ignore_page_etags and _etag_matches(headers.get("If-None-Match"), page.etag):
            return _Response(304, response_headers)
        return _Response(200, response_headers, page.body)

    def _serve_root(self, method: str, headers: CaseInsensitiveDict[str]) -> _Response:
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
        content_type = self._negotiate(headers.get("Accept"))
        kind = "json" if content_type == V1_JSON else "html"
        with self._lock:
            page = self._root_page(kind)
        return self._simple_response(_with_charset(content_type), page, headers)

    def _serve_detail(
        self, method: str, name: str, query: str, headers: CaseInsensitiveDict[str]
    ) -> _Response:
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
        content_type = self._negotiate(headers.get("Accept"))
        kind = "json" if content_type == V1_JSON else "html"
        norm = normalize(name)
        with self._lock:
            if norm in self._stale:
                snapshot = self._stale[norm]
                page = None if snapshot is None else snapshot[kind]
            else:
                project = self._projects.get(norm)
                page = None if project is None else self._detail_page(project, kind)
        if page is None:
            return _text(404, "not found")
        if name != norm:
            return _redirect(f"/simple/{norm}/", query)
        return self._simple_response(_with_charset(content_type), page, headers)

    def _serve_file(self, method: str, path: str, headers: CaseInsensitiveDict[str]) -> _Response:
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
        filename = path.rsplit("/", 1)[-1]
        with self._lock:
            blob = self._blobs.get(path)
            content = self._wrong.get(filename, blob.content if blob else b"")
            truncate_at = self._truncate.get(filename)
        if blob is None:
            return _text(404, "not found")
        response_headers = [
            ("Content-Type", "application/octet-stream"),
            ("ETag", blob.etag),
            ("Last-Modified", blob.last_modified),
            ("Accept-Ranges", "bytes"),
            ("Cache-Control", FILE_CACHE_CONTROL),
            ("Access-Control-Allow-Origin", "*"),
        ]
        if _etag_matches(headers.get("If-None-Match"), blob.etag):
            return _Response(304, response_headers)
        body: bytes | memoryview = content
        status = 200
        byte_range = (
            None if self.ignore_ranges else _parse_range(headers.get("Range"), len(content))
        )
        if_range = headers.get("If-Range")
        if byte_range is not None and (if_range is None or if_range == blob.etag):
            if byte_range == "unsatisfiable":
                response_headers.append(("Content-Range", f"bytes */{len(content)}"))
                return _Response(416, response_headers)
            first, last = byte_range
            status, body = 206, memoryview(content)[first : last + 1]
            response_headers.append(("Content-Range", f"bytes {first}-{last}/{len(content)}"))
        return _Response(status, response_headers, body, truncate_at=truncate_at, paced=True)

    def _serve_provenance(self, method: str, path: str) -> _Response:
        """/integrity/<project>/<version>/<filename>/provenance, as Warehouse serves it."""
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", [("Allow", "GET, HEAD")])
        with self._lock:
            record = next((r for r in self._files.values() if _provenance_path(r) == path), None)
            body = self._provenance.get(record.filename) if record is not None else None
        if body is None:
            return _text(404, "not found")
        headers = [("Content-Type", "application/vnd.pypi.integrity.v1+json")]
        return _Response(200, headers, body)

    def _serve_xmlrpc(
        self, method: str, headers: CaseInsensitiveDict[str], body: bytes
    ) -> _Response:
        # Warehouse routes XML-RPC only for POST with Content-Type text/xml; anything else
        # falls through to its 404.
        content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if method != "POST" or content_type != "text/xml":
            return _text(404, "not found (XML-RPC needs POST with Content-Type: text/xml)")
        try:
            params, rpc_method = xmlrpc.client.loads(body, use_builtin_types=True)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError) as error:
            return _xmlrpc_response(xmlrpc.client.Fault(-32700, f"parse error; {error}"))
        if self.xmlrpc_fault is not None:
            return _xmlrpc_response(xmlrpc.client.Fault(*self.xmlrpc_fault))
        return _xmlrpc_response(self._call(rpc_method or "", params))

    def _call(self, rpc_method: str, params: tuple[object, ...]) -> object:
        def bad_params(detail: str) -> xmlrpc.client.Fault:
            return xmlrpc.client.Fault(-32602, f"client error; {rpc_method}: {detail}")

        with self._lock:
            if rpc_method == "changelog_last_serial":
                if params:
                    return bad_params("takes no arguments")
                return len(self._journal)
            if rpc_method == "changelog_since_serial":
                if len(params) != 1 or type(params[0]) is not int:
                    return bad_params("since must be an int")
                since = max(0, params[0])
                rows = self._journal[since : since + self.changelog_page_size]
                return [
                    [e.name, e.version, int(e.timestamp.timestamp()), e.action, e.serial]
                    for e in rows
                ]
            if rpc_method == "list_packages_with_serial":
                if params:
                    return bad_params("takes no arguments")
                return {p.name: p.last_serial for p in self._projects.values()}
        return xmlrpc.client.Fault(-32601, f"server error; method not found: {rpc_method}")


# --------------------------------------------------------------------------------------------
# Helpers


def negotiate(accept: str | None, offers: tuple[str, ...] = _OFFERS) -> str:
    """Pick a Simple API media type the way PyPI (WebOb's acceptable_offers) does.

    Highest q wins, the most specific range decides an offer's q, ties go to the earlier
    offer, and when nothing is acceptable PyPI falls back to text/html (no 406).
    """
    if not accept or not accept.strip():
        return TEXT_HTML
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media_type, *params = part.split(";")
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media_type.strip().lower(), quality))
    best, best_q = TEXT_HTML, 0.0
    for offer in offers:
        major = offer.split("/")[0]
        specificity, q = -1, 0.0
        for media_type, quality in ranges:
            rank = {offer: 2, f"{major}/*": 1, "*/*": 0}.get(media_type, -1)
            if rank > specificity:
                specificity, q = rank, quality
        if q > best_q:
            best, best_q = offer, q
    return best


def _with_charset(content_type: str) -> str:
    return content_type + "; charset=utf-8" if content_type == TEXT_HTML else content_type


def _provenance_path(record: FileRecord) -> str:
    return f"/integrity/{record.project}/{record.version}/{quote(record.filename)}/provenance"


def _render_html(
    project: Project,
    files: list[tuple[Release, FileRecord]],
    base: str,
    attested: set[str],
) -> bytes:
    """Warehouse's templates/api/simple/detail.html, attribute for attribute."""
    escape = html.escape
    lines = []
    for release, record in files:
        attrs = [f'href="{escape(base + record.path)}#sha256={record.sha256}"']
        if record.requires_python:
            attrs.append(f'data-requires-python="{escape(record.requires_python)}"')
        if release.yanked:
            attrs.append(f'data-yanked="{escape(release.yanked_reason)}"')
        if record.metadata is not None:
            digest = f"sha256={record.metadata_sha256}"
            attrs.append(f'data-dist-info-metadata="{digest}" data-core-metadata="{digest}"')
        if record.filename in attested:
            attrs.append(f'data-provenance="{escape(base + _provenance_path(record))}"')
        lines.append(f"    <a {' '.join(attrs)}>{escape(record.filename)}</a><br />\n")
    name = escape(project.normalized)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>Links for {name}</title>\n  </head>\n  <body>\n"
        f"    <h1>Links for {name}</h1>\n"
        f"{''.join(lines)}  </body>\n</html>\n<!--SERIAL {project.last_serial}-->"
    ).encode()


def _render_json(
    project: Project,
    files: list[tuple[Release, FileRecord]],
    base: str,
    attested: set[str],
) -> bytes:
    """PEP 691 JSON as Warehouse's _simple_detail builds it."""
    entries = []
    for release, record in files:
        metadata = False if record.metadata is None else {"sha256": record.metadata_sha256}
        yanked: bool | str = release.yanked
        if release.yanked and release.yanked_reason:
            yanked = release.yanked_reason
        entries.append(
            {
                "filename": record.filename,
                "url": base + record.path,
                "hashes": {"sha256": record.sha256},
                "requires-python": record.requires_python,
                "size": record.size,
                "upload-time": record.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "yanked": yanked,
                "core-metadata": metadata,
                "data-dist-info-metadata": metadata,
                "provenance": (
                    base + _provenance_path(record) if record.filename in attested else None
                ),
            }
        )
    return json.dumps(
        {
            "meta": {"api-version": API_VERSION, "_last-serial": project.last_serial},
            "name": project.normalized,
            "versions": sorted(project.releases, key=_version_key),
            "files": entries,
        }
    ).encode()


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> _Response:
    return _Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])],
        f"{status} {message}\n".encode(),
    )


def _redirect(location: str, query: str) -> _Response:
    # PyPI sends a path-only Location; clients resolve it against the request URL.
    return _text(301, "moved", [("Location", location + (f"?{query}" if query else ""))])


def _xmlrpc_response(result: object) -> _Response:
    if isinstance(result, xmlrpc.client.Fault):
        payload = xmlrpc.client.dumps(result, methodresponse=True, allow_none=True)
    else:
        payload = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True)
    return _Response(200, [("Content-Type", "text/xml; charset=utf-8")], payload.encode())


def _peek_rpc_method(body: bytes) -> str | None:
    try:
        return xmlrpc.client.loads(body)[1]
    except Exception:  # a malformed call is answered with a fault later; logging must not fail
        return None


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """A single `bytes=first-[last]` range; anything else is ignored like PyPI's CDN does."""
    if not value:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d+)-(\d*)\s*", value)
    if match is None:
        return None  # suffix (`-n`) and multi-ranges: serve the whole file
    first = int(match[1])
    last = int(match[2]) if match[2] else None
    if last is not None and last < first:
        return None  # syntactically invalid: RFC 9110 says ignore the header
    if first >= size:
        return "unsatisfiable"
    return first, size - 1 if last is None else min(last, size - 1)


def _wheel_pyversion(filename: str) -> str:
    """The python tag of a wheel filename (`py3`, `cp312`, `py2.py3`), as twine sends it."""
    return filename.removesuffix(".whl").split("-")[-3]


def _wheel_metadata(content: bytes) -> bytes | None:
    """The wheel's top-level `*.dist-info/METADATA`, byte for byte, as Warehouse extracts it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = [
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            return archive.read(names[0]) if len(names) == 1 else None
    except (zipfile.BadZipFile, KeyError, OSError):
        return None


def iter_journal_actions(fake: FakeUpstream, name: str) -> Iterator[tuple[str | None, str]]:
    """(version, action) pairs of one project's journal entries, for readable assertions."""
    norm = normalize(name)
    for entry in fake.journal:
        if normalize(entry.name) == norm:
            yield entry.version, entry.action


__all__ = [
    "API_VERSION",
    "FILE_CACHE_CONTROL",
    "RATE_LIMIT_FAULT",
    "SIMPLE_CACHE_CONTROL",
    "TEXT_HTML",
    "V1_HTML",
    "V1_JSON",
    "FakeUpstream",
    "FileRecord",
    "JournalEntry",
    "Project",
    "Release",
    "RequestRecord",
    "iter_journal_actions",
    "negotiate",
    "normalize",
]
