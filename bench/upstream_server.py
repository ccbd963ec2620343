"""The fake upstream index in a process of its own, for the benchmark.

    python -m bench.upstream_server --port P --wheels DIR [--bulk N]
        [--large-bytes N --throttle BYTES_PER_SECOND]

It publishes every wheel of DIR, ``--bulk`` file-less projects (a big ``/simple/`` list)
and one large wheel (``bigfile``) whose downloads alone are paced at ``--throttle``; every
other file goes out at full speed, so the throttle cannot slow the install measurements.

Besides the index it answers, without logging them:

* ``GET /_bench/info``: JSON with the simple URL, the published files and the large file;
* ``GET /_bench/log``: JSON ``[[method, path], ...]`` of the requests since the last clear;
* ``POST /_bench/clear``: forget the request log.

It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import email.message
import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from requests.structures import CaseInsensitiveDict

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

    def __init__(self, *, port: int, throttle: float | None) -> None:
        super().__init__(port=port)
        self.throttle_bytes_per_second = throttle
        self.throttled_paths: set[str] = set()
        self.info: dict[str, Any] = {}

    def _respond(
        self, method: str, raw_path: str, headers: email.message.Message, body: bytes
    ) -> _Response:
        path = urlsplit(raw_path).path
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX) :])
        return super()._respond(method, raw_path, headers, body)

    def _serve_file(self, method: str, path: str, headers: CaseInsensitiveDict[str]) -> _Response:
        response = super()._serve_file(method, path, headers)
        response.paced = path in self.throttled_paths
        return response

    def _control(self, method: str, command: str) -> _Response:
        if command == "info" and method == "GET":
            return _json_response({**self.info, "simple_url": self.simple_url})
        if command == "log" and method == "GET":
            return _json_response([[r.method, r.path] for r in self.find()])
        if command == "clear" and method == "POST":
            self.clear_log()
            return _json_response({"cleared": True})
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
    args = parser.parse_args(argv)

    fake = BenchUpstream(port=args.port, throttle=args.throttle)
    records = fake.load_directory(args.wheels)
    if not records:
        parser.error(f"no wheels in {args.wheels}")
    large = None
    if args.large_bytes:
        large = fake.large_file(LARGE_PROJECT, LARGE_VERSION, args.large_bytes)
        fake.throttled_paths.add(large.path)
    if args.bulk:
        fake.add_bulk_projects(args.bulk)
    fake.info = {
        "files": [_file_info(r) for r in records],
        "large": None if large is None else _file_info(large),
        "bulk": args.bulk,
        "throttle": args.throttle,
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
