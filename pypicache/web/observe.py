"""Every request measured once, around the whole app: metrics and the access log line."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from waitress.buffers import ReadOnlyFileBasedBuffer

from pypicache.ops.metrics import Metrics
from pypicache.web.sendfile import FileRegion

access_log = logging.getLogger("pypicache.access")
log = logging.getLogger(__name__)

CACHE_KEY = "pypicache.cache"  # environ key: "hit", "miss" or "stale", set where it is known
# The status recorded for a response whose body failed after its status was chosen: waitress
# answers 500 when nothing was sent yet, and otherwise cuts the connection (the client sees
# a short download).  Either way the client did not get what the status said.
FAILED_STATUS = "500"
Finish = Callable[[int], None]
BATCH_INTERVAL = 0.2


def note_cache(request: Any, kind: str, result: str) -> None:
    """Count a cache lookup and let the access log line say how it went."""
    request.environ[CACHE_KEY] = result
    request.services.metrics.cache.labels(kind, result).inc()


def route_of(path: str, method: str) -> str:
    """A small, fixed set of labels (never a project name: that would explode the series)."""
    if path.startswith("/simple/"):
        return "simple_index" if path == "/simple/" else "simple_project"
    if path.startswith("/packages/"):
        return "metadata" if path.endswith(".metadata") else "file"
    if method == "POST" and path in ("/legacy/", "/legacy", "/"):
        return "upload"
    if path.startswith("/admin"):
        return "admin"
    return {"/health": "health", "/metrics": "metrics", "/api/status": "status"}.get(path, "other")


# Bytes of a file read at a time where it cannot be sent by the kernel: each block is
# read once and sent from memory, in as many sends as the socket takes.
SEND_BLOCK = 256 * 1024
# Bytes handed to one sendfile call: a few socket buffers' worth.
REGION_MAX = 16 * 1024 * 1024


class ObservedFile(ReadOnlyFileBasedBuffer):
    """waitress's file wrapper, still sent the fast way, reporting when the response is done.

    A channel that sends with ``sendfile`` (web.sendfile) asks for the body's regions
    of its open file; otherwise the file is read a block at a time.
    """

    def __init__(self, file: Any, block_size: int = 32768, *, finish: Finish) -> None:
        super().__init__(file, block_size)
        self._finish = finish
        self._prepared = 0
        self._block = memoryview(b"")  # read, not yet sent
        self._region: FileRegion | None = None  # where the unsent bytes start, once asked

    def prepare(self, size: int | None = None) -> int:
        self._prepared = super().prepare(size)
        return self._prepared

    def send_regions(self) -> None:
        """Give regions of the file from now on, where it is an OS file."""
        try:
            fd, offset = self.file.fileno(), self.file.tell()
        except (AttributeError, OSError, ValueError):
            return
        self._region = FileRegion(fd, offset, 0)

    def get(self, numbytes: int = -1, skip: bool = False) -> memoryview | bytes | FileRegion:
        """The next bytes to send (a block or a region, whatever ``numbytes``)."""
        if skip:
            raise NotImplementedError("waitress skips with skip()")
        region = self._region
        if region is not None:
            return FileRegion(region.fd, region.offset, min(self.remain, REGION_MAX))
        if not self._block and self.remain > 0:
            self._block = memoryview(self.file.read(min(SEND_BLOCK, self.remain)))
        return self._block

    def skip(self, numbytes: int, allow_prune: int = 0) -> None:
        if self.remain < numbytes:
            raise ValueError(f"cannot skip {numbytes} bytes of {self.remain}")
        self.remain -= numbytes
        if self._region is not None:
            self._region.offset += numbytes
            return
        taken = min(numbytes, len(self._block))
        self._block = self._block[taken:]
        if numbytes > taken:
            self.file.seek(numbytes - taken, 1)

    def close(self) -> None:
        unsent = getattr(self, "remain", 0)  # closing sets it to 0
        self._block = memoryview(b"")
        super().close()
        self._finish(self._prepared - unsent)


class AccessLog:
    """Access log lines written by a thread of their own.

    Formatting and writing a log line costs more than answering a hot page;
    the request thread only queues a tuple.  Records still go through the
    configured ``pypicache.access`` logger and its handlers.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._thread.start()

    def put(self, entry: tuple[Any, ...]) -> None:
        self._queue.put(entry)

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._stopping.set()
        self._thread.join(10)

    def _write(self) -> None:
        # Woken a few times a second, not per request: a thread woken for every
        # line takes the GIL from the request threads just as often.
        while not self._stopping.wait(BATCH_INTERVAL):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                at, method, path, code, sent, seconds, cache = self._queue.get_nowait()
            except queue.Empty:
                return
            record = access_log.makeRecord(
                access_log.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %s %dB %.1fms cache=%s",
                (method, path, code, sent, seconds * 1000, cache),
                None,
                extra={
                    "method": method,
                    "path": path,
                    "status": int(code),
                    "bytes": sent,
                    "duration_ms": round(seconds * 1000, 3),
                    "cache": cache,
                },
            )
            record.created, record.msecs = at, (at % 1) * 1000  # when it was answered
            access_log.handle(record)


class Observer:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.access_log = AccessLog()
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def stop(self) -> None:
        self.access_log.stop()

    def __call__(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        serve: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        status = ["500"]

        def capture(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code
            return start_response(code, headers, exc_info)

        finished = []

        def finish(sent: int) -> None:
            if not finished:  # a HEAD's empty body closes the file wrapper too
                finished.append(sent)
                self._record(environ, status[0], sent, time.perf_counter() - started)

        if environ.get("wsgi.file_wrapper") is ReadOnlyFileBasedBuffer:
            environ["wsgi.file_wrapper"] = lambda f, size=32768: ObservedFile(
                f, size, finish=finish
            )
        body = serve(environ, capture)
        if isinstance(body, ObservedFile):
            return body  # it reports itself when waitress closes it
        if isinstance(body, list):
            finish(sum(map(len, body)))
            return body

        def failed(sent: int, exc: Exception) -> None:
            log.error(
                "%s %s failed after %s and %d bytes: %s",
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                status[0][:3],
                sent,
                exc,
            )
            status[0] = FAILED_STATUS

        return _counted(body, finish, failed)

    def _record(self, environ: dict[str, Any], status: str, sent: int, seconds: float) -> None:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        code = status[:3]
        key = (route_of(path, method), method, code)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(*key),
                self.metrics.duration.labels(key[0]),
                self.metrics.served_bytes.labels(key[0]),
            )
            self._children[key] = children
        requests, duration, served = children
        requests.inc()
        duration.observe(seconds)
        served.inc(sent)
        if access_log.isEnabledFor(logging.INFO):
            entry = (time.time(), method, path, code, sent, seconds, environ.get(CACHE_KEY, "-"))
            self.access_log.put(entry)


def _counted(
    body: Iterable[bytes], finish: Finish, failed: Callable[[int, Exception], None]
) -> Iterator[bytes]:
    """Streamed responses (cache fills) end when the last chunk went out, or the client left.

    A body that raises is recorded as FAILED_STATUS, not as the status it began with.
    """
    sent = 0
    try:
        for chunk in body:
            sent += len(chunk)
            yield chunk
    except Exception as exc:
        failed(sent, exc)
        raise
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
        finish(sent)
