"""Changelog follower benchmark: a 100,000-entry backlog, and publish-to-listed latency.

    python bench/follower_bench.py [--quick] [--rtt-ms MS] [--out DIR]

The fake upstream runs in this process; every answer it gives (pages and XML-RPC calls
alike) waits ``--rtt-ms`` (default 20, as in bench/benchmark.py), one network round trip.

1. Backlog: pypicache caches CACHED projects and follows the fake upstream;
   it is stopped, the upstream then writes about 100,000 changelog entries of
   which 1% touch cached projects (half of the cached projects get a release),
   and pypicache is started again on the same data.  Measured, from the moment
   the process is launched: seconds until the watermark reaches the upstream's
   serial (and when the server answered, when the first refetch started); and
   every upstream request it made (target: at most 30 s, one page request for
   each changed cached project and nothing else).
2. Latency: with follow_interval = 1, the time from an upstream publish to the
   new file being listed by pypicache, over several trials, each published at a
   random moment of the poll cycle (target: p50 < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.upstream_server import BenchUpstream  # noqa: E402
from tests.support.dists import make_wheel  # noqa: E402
from tests.support.fakeupstream import FakeUpstream  # noqa: E402

JSON = "application/vnd.pypi.simple.v1+json"
TARGET_SECONDS = 30.0
TARGET_P50_SECONDS = 2.0
FULL = {"cached": 1000, "others": 99_000, "trials": 20}
QUICK = {"cached": 100, "others": 10_000, "trials": 5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Seconds until ``condition()`` held; raises if it did not within ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - started


class Pypicache:
    """``pypicache serve`` as its own process, following the fake upstream."""

    def __init__(self, upstream: FakeUpstream, data_dir: Path, follow_interval: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYPICACHE_")}
        env.update(
            PYPICACHE_UPSTREAM_URL=upstream.simple_url,
            PYPICACHE_CHANGELOG_URL=upstream.xmlrpc_url,
            PYPICACHE_DATA_DIR=str(data_dir),
            PYPICACHE_FOLLOW_INTERVAL=follow_interval,
            PYPICACHE_FOLLOW_METHOD="xmlrpc",
            PYPICACHE_PAGE_TTL="86400",
        )
        self.log = (data_dir.parent / f"pypicache-{self.port}.log").open("w")
        self.launched = time.monotonic()  # the follower starts before the server answers
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "pypicache"), "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.startup_seconds = wait_for(self._healthy, 60, 0.05)
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).ok
        except requests.RequestException:
            return False

    def status(self) -> dict[str, Any]:
        return requests.get(self.url + "/api/status", timeout=10).json()

    def versions(self, name: str, session: requests.Session | None = None) -> list[str]:
        response = (session or requests).get(
            f"{self.url}/simple/{name}/", headers={"Accept": JSON}, timeout=10
        )
        response.raise_for_status()
        return response.json()["versions"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def backlog(upstream: FakeUpstream, work: Path, cached: int, others: int) -> dict[str, Any]:
    """Catch-up time and upstream requests of a restart behind ``others`` + a few entries."""
    for number in range(cached):
        upstream.publish(make_wheel(f"cached{number}", "1.0"))
    first = Pypicache(upstream, work / "data", follow_interval="1")
    try:
        with requests.Session() as session:
            for number in range(cached):
                session.get(f"{first.url}/simple/cached{number}/", timeout=10).raise_for_status()
        wait_for(lambda: first.status()["watermark"] == upstream.serial, 60, 0.1)
    finally:
        first.stop()

    start_serial = upstream.serial
    changed = cached // 2  # a new release: two entries each ("new release", "add py3 file")
    upstream.add_bulk_projects(others // 2)  # two entries each ("create", "add Owner")
    for number in range(changed):
        upstream.publish(make_wheel(f"cached{number}", "2.0"))
    entries = upstream.serial - start_serial
    touching = 2 * changed
    upstream.clear_log()

    second = Pypicache(upstream, work / "data", follow_interval="1")
    try:
        wait_for(lambda: second.status()["watermark"] == upstream.serial, 600, 0.05)
        seconds = time.monotonic() - second.launched
        log = upstream.find()
        with requests.Session() as session:
            stale = [
                number
                for number in range(cached)
                if second.versions(f"cached{number}", session)
                != (["1.0", "2.0"] if number < changed else ["1.0"])
            ]
    finally:
        second.stop()
    calls = [r for r in log if r.method == "POST"]
    pages = Counter(r.path for r in log if r.method == "GET" and r.path.startswith("/simple/"))
    expected = {f"/simple/cached{number}/" for number in range(changed)}
    other_requests = len(log) - len(calls) - pages.total()
    # The phases, from the upstream's request log: the first page request ends the reading.
    first_page = min((r.time for r in log if r.path in expected), default=None)
    reading_ended = first_page if first_page is not None else second.launched + seconds
    return {
        "entries": entries,
        "entries_touching_cached": touching,
        "share_touching_cached": round(touching / entries, 4),
        "cached_projects": cached,
        "projects_changed": changed,
        "seconds_to_catch_up": round(seconds, 2),
        "startup_seconds": round(second.startup_seconds, 2),
        "first_refetch_after_seconds": round(reading_ended - second.launched, 2),
        "refetch_seconds": round(second.launched + seconds - reading_ended, 2),
        "upstream_requests": len(log),
        "upstream_page_requests": pages.total(),
        "pages_not_changed": sorted(set(pages) - expected)[:10],
        "pages_repeated": sorted(path for path, n in pages.items() if n > 1)[:10],
        "other_requests": other_requests,
        "xmlrpc_calls": len(calls),
        "xmlrpc_methods": dict(Counter(r.rpc_method or "?" for r in calls)),
        "projects_served_wrong": len(stale),
        "target_seconds": TARGET_SECONDS,
        "pass": (
            seconds <= TARGET_SECONDS
            and set(pages) == expected
            and pages.total() == changed
            and other_requests == 0
            and not stale
        ),
    }


def latency(upstream: FakeUpstream, work: Path, trials: int) -> dict[str, Any]:
    """Publish-to-listed seconds, each publish at a random point of the poll cycle."""
    phases = random.Random(1)
    upstream.publish(make_wheel("hot", "0.1"))
    index = Pypicache(upstream, work / "latency-data", follow_interval="1")
    try:
        assert index.versions("hot") == ["0.1"]
        wait_for(lambda: index.status()["watermark"] == upstream.serial, 60, 0.05)
        samples = []
        for trial in range(trials):
            time.sleep(phases.uniform(0, 1.5))
            version = f"1.{trial}"
            upstream.publish(make_wheel("hot", version))
            samples.append(wait_for(lambda v=version: v in index.versions("hot"), 30))
    finally:
        index.stop()
    p50 = statistics.median(samples)
    return {
        "trials": trials,
        "p50_seconds": round(p50, 3),
        "p95_seconds": round(statistics.quantiles(samples, n=20, method="inclusive")[18], 3),
        "max_seconds": round(max(samples), 3),
        "min_seconds": round(min(samples), 3),
        "target_p50_seconds": TARGET_P50_SECONDS,
        "pass": p50 < TARGET_P50_SECONDS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10,000-entry backlog, 5 trials")
    parser.add_argument(
        "--rtt-ms", type=float, default=20.0, help="round trip of every upstream answer"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    size = QUICK if args.quick else FULL
    results: dict[str, Any] = {"meta": {"quick": args.quick, "rtt_ms": args.rtt_ms}}
    with (
        tempfile.TemporaryDirectory() as temp,
        BenchUpstream(port=0, throttle=None, rtt=args.rtt_ms / 1000) as upstream,
    ):
        work = Path(temp)
        results["backlog"] = backlog(upstream, work, size["cached"], size["others"])
        print("backlog:", json.dumps(results["backlog"]), flush=True)
        results["latency"] = latency(upstream, work, size["trials"])
        print("latency:", json.dumps(results["latency"]), flush=True)
    (args.out / "follower.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
