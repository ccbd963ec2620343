"""The fake upstream index in a process of its own, for the benchmark.

    python -m bench.upstream_server --port P --wheels DIR [--bulk N]
        [--large-bytes N --throttle BYTES_PER_SECOND] [--shapes 300,1500,...] [--rtt-ms MS]

It publishes every wheel of DIR, ``--bulk`` file-less projects (a big ``/simple/`` list),
the PyPI-shaped projects of bench/pypishape.py for each of ``--shapes`` (``shape-11000``
has about 11,000 files) and one large wheel (``bigfile``) whose downloads alone are paced
at ``--throttle``; every other file goes out at full speed, so the throttle cannot slow
the install measurements.  Every index and file request waits ``--rtt-ms`` before its
answer starts: one network round trip, so chains of requests cost what they do on a real
network (bandwidth stays the loopback's).

Besides the index it answers, without logging them:

* ``GET /_bench/info``: JSON with the simple URL, the published files and the large file;
* ``GET /_bench/log``: JSON ``[[method, path], ...]`` of the requests since the last clear;
* ``POST /_bench/clear``: forget the request log;
* ``POST /_bench/add-file?project=NAME``: publish one more file (a new release's sdist)
  of a PyPI-shaped project, as a project that releases daily does.

It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import email.message
import json
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

from bench.pypishape import generate, project_name
from tests.support.dists import make_sdist
from tests.support.fakeupstream import FakeUpstream, FileRecord, _Response

CONTROL_PREFIX = "/_bench/"
LARGE_PROJECT = "bigfile"
LARGE_VERSION = "1.0"


def _file_info(record: FileRecord) -> dict[str, Any]:
    return {
        "project": record.project,
        "version": record.version,
        "filename": record.filename,
        "path": record.path,
        "size": record.size,
        "sha256": record.sha256,
        "has_metadata": record.metadata is not None,
    }


class BenchUpstream(FakeUpstream):
    """FakeUpstream with a per-path throttle and a small control API for the benchmark."""

    def __init__(self, *, port: int, throttle: float | None, rtt: float = 0.0) -> None:
        super().__init__(port=port)
        self.throttle_bytes_per_second = throttle
        self.rtt = rtt
        self.added = 0  # files published through the control API
        self.throttled_paths: set[str] = set()
        self.info: dict[str, Any] = {}

    def _respond(
        self, method: str, raw_path: str, headers: email.message.Message, body: bytes
    ) -> _Response:
        path = urlsplit(raw_path).path
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, raw_path, path[len(CONTROL_PREFIX) :])
        if self.rtt:
            time.sleep(self.rtt)  # the simulated network's round trip, not a wait for a state
        return super()._respond(method, raw_path, headers, body)

    def _serve_file(self, method: str, path: str, headers: CaseInsensitiveDict[str]) -> _Response:
        response = super()._serve_file(method, path, headers)
        response.paced = path in self.throttled_paths
        return response

    def _control(self, method: str, raw_path: str, command: str) -> _Response:
        if command == "info" and method == "GET":
            return _json_response({**self.info, "simple_url": self.simple_url})
        if command == "log" and method == "GET":
            return _json_response([[r.method, r.path] for r in self.find()])
        if command == "clear" and method == "POST":
            self.clear_log()
            return _json_response({"cleared": True})
        if command == "add-file" and method == "POST":
            project = parse_qs(urlsplit(raw_path).query).get("project", [""])[0]
            if project not in self.info.get("shapes", {}):
                return _json_response({"error": f"no PyPI-shaped project {project!r}"}, 404)
            self.added += 1
            record = self.publish(make_sdist(project, f"99.{self.added}"))
            return _json_response(_file_info(record))
        return _json_response({"error": f"no such control request: {method} {command}"}, 404)


def _json_response(data: object, status: int = 200) -> _Response:
    body = json.dumps(data).encode()
    return _Response(status, [("Content-Type", "application/json")], body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--wheels", type=Path, required=True, help="directory of real wheels")
    parser.add_argument("--bulk", type=int, default=0, help="file-less projects to add")
    parser.add_argument("--large-bytes", type=int, default=0, help="size of the large file")
    parser.add_argument("--throttle", type=float, default=None, help="bytes/s for the large file")
    parser.add_argument(
        "--shapes",
        default="",
        help="comma-separated file counts of PyPI-shaped projects to publish (e.g. 300,11000)",
    )
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip per request")
    args = parser.parse_args(argv)

    fake = BenchUpstream(port=args.port, throttle=args.throttle, rtt=args.rtt_ms / 1000)
    records = fake.load_directory(args.wheels)
    if not records and not args.bulk:
        parser.error(f"no wheels in {args.wheels} (and no --bulk projects)")
    large = None
    if args.large_bytes:
        large = fake.large_file(LARGE_PROJECT, LARGE_VERSION, args.large_bytes)
        fake.throttled_paths.add(large.path)
    if args.bulk:
        fake.add_bulk_projects(args.bulk)
    shapes: dict[str, dict[str, Any]] = {}
    for files in (int(n) for n in args.shapes.split(",") if n.strip()):
        uploads = generate(files)
        for upload in uploads:
            fake.publish(upload.dist, upload_time=upload.upload_time)
        newest = uploads[-1].dist
        shapes[project_name(files)] = {
            "files": len(uploads),
            "newest": _file_info(fake.file(newest.filename)),
        }
    fake.info = {
        "files": [_file_info(r) for r in records],
        "large": None if large is None else _file_info(large),
        "shapes": shapes,
        "bulk": args.bulk,
        "throttle": args.throttle,
        "rtt_ms": args.rtt_ms,
    }

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    print(f"fake upstream serving {fake.simple_url} ({len(records)} wheels)", flush=True)
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
