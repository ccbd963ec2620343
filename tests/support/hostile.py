"""An upstream under an attacker's control: it answers each path with exactly the bytes set.

The well-behaved ``FakeUpstream`` renders valid pages from a data model; this one serves
whatever a test hands it (markup in hashes, ``file://`` links, redirects, gzip bombs, a
captive portal's HTML), and records every request, so a test can prove what pypicache
fetched and what it refused to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from tests.support.dists import Dist

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class Answer:
    """What the hostile upstream sends for one path: status, headers, and a body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], Iterable[bytes]] = b""


class HostileUpstream:
    """A loopback HTTP server answering each path with the ``Answer`` a test set for it."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []  # paths, with query strings, in arrival order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def simple_url(self) -> str:
        return self.url + "/simple/"

    def set(self, path: str, answer: Answer) -> None:
        self.answers[path] = answer

    def json_page(self, name: str, files: list[dict[str, Any]], **extra: Any) -> None:
        """Serve ``/simple/<name>/`` as a PEP 691 JSON page listing ``files`` as given."""
        meta = {"api-version": "1.1", **extra.pop("meta", {})}
        body = json.dumps({"meta": meta, "name": name, "files": files, **extra}).encode()
        self.set(f"/simple/{name}/", Answer(headers={"Content-Type": JSON_TYPE}, body=body))

    def serve_dist(self, dist: Dist) -> dict[str, Any]:
        """Serve ``dist`` under /files/ and return its PEP 691 file entry."""
        path = f"/files/{dist.filename}"
        headers = {"Content-Type": "application/octet-stream"}
        self.set(path, Answer(headers=headers, body=dist.content))
        return {
            "filename": dist.filename,
            "url": self.url + path,
            "hashes": {"sha256": dist.sha256},
            "size": dist.size,
        }

    def html_page(self, name: str, html: str | bytes) -> None:
        """Serve ``/simple/<name>/`` as the HTML given, byte for byte."""
        body = html.encode() if isinstance(html, str) else html
        self.set(f"/simple/{name}/", Answer(headers={"Content-Type": "text/html"}, body=body))

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for seen in self.requests if urlsplit(seen).path == path)

    def _record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _handler(upstream: HostileUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            upstream._record(self.path)
            answer = upstream.answers.get(urlsplit(self.path).path, Answer(status=404))
            self.send_response(answer.status)
            chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body()
            headers = {k.lower(): v for k, v in answer.headers.items()}
            if isinstance(answer.body, bytes) and "content-length" not in headers:
                headers["content-length"] = str(len(answer.body))
            if "content-length" not in headers:
                headers["connection"] = "close"
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for chunk in chunks:
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up: what a cap on the page size should do
            if "content-length" not in headers:
                self.close_connection = True

    return Handler
