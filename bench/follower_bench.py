"""Changelog follower benchmark: a 100,000-entry backlog, and publish-to-listed latency.

    python bench/follower_bench.py [--quick] [--out DIR]

1. Backlog: pypicache caches CACHED projects and follows the fake upstream;
   it is stopped, the upstream then writes about 100,000 changelog entries of
   which 1% touch cached projects, and pypicache is started again on the same
   data.  Measured: seconds until the watermark reaches the upstream's serial,
   and the upstream requests it took (target: under 30 s, requests only for
   the 1%).
2. Latency: with follow_interval = 1, the time from an upstream publish to the
   new file being listed by pypicache, over several trials (target: p50 < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.dists import make_wheel  # noqa: E402
from tests.support.fakeupstream import FakeUpstream  # noqa: E402

JSON = "application/vnd.pypi.simple.v1+json"


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
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "pypicache"), "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, 60, 0.05)

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).ok
        except requests.RequestException:
            return False

    def status(self) -> dict:
        return requests.get(self.url + "/api/status", timeout=10).json()

    def versions(self, name: str) -> list[str]:
        response = requests.get(f"{self.url}/simple/{name}/", headers={"Accept": JSON}, timeout=10)
        return response.json()["versions"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.log.close()


def backlog(upstream: FakeUpstream, work: Path, cached: int, others: int) -> dict:
    for number in range(cached):
        upstream.publish(make_wheel(f"cached{number}", "1.0"))
    first = Pypicache(upstream, work / "data", follow_interval="1")
    with requests.Session() as session:
        for number in range(cached):
            session.get(f"{first.url}/simple/cached{number}/", timeout=10).raise_for_status()
    wait_for(lambda: first.status()["watermark"] == upstream.serial, 60, 0.1)
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
    started = time.monotonic()
    wait_for(lambda: second.status()["watermark"] == upstream.serial, 600, 0.05)
    seconds = time.monotonic() - started
    pages = upstream.count(path_prefix="/simple/")
    calls = upstream.count(method="POST")
    assert second.versions("cached0") == ["1.0", "2.0"]
    second.stop()
    return {
        "entries": entries,
        "entries_touching_cached": touching,
        "share_touching_cached": round(touching / entries, 4),
        "projects_changed": changed,
        "seconds_to_catch_up": round(seconds, 2),
        "upstream_page_requests": pages,
        "xmlrpc_calls": calls,
        "target_seconds": 30,
        "pass": seconds < 30 and pages == changed,
    }


def latency(upstream: FakeUpstream, work: Path, trials: int) -> dict:
    upstream.publish(make_wheel("hot", "0.1"))
    index = Pypicache(upstream, work / "latency-data", follow_interval="1")
    try:
        assert index.versions("hot") == ["0.1"]
        wait_for(lambda: index.status()["watermark"] == upstream.serial, 60, 0.05)
        samples = []
        for trial in range(trials):
            version = f"1.{trial}"
            upstream.publish(make_wheel("hot", version))
            samples.append(wait_for(lambda v=version: v in index.versions("hot"), 30))
            time.sleep(0.37)  # spread the publishes over the poll cycle
    finally:
        index.stop()
    p50 = statistics.median(samples)
    return {
        "trials": trials,
        "p50_seconds": round(p50, 3),
        "max_seconds": round(max(samples), 3),
        "min_seconds": round(min(samples), 3),
        "target_p50_seconds": 2,
        "pass": p50 < 2,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10,000-entry backlog, 5 trials")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as temp, FakeUpstream() as upstream:
        work = Path(temp)
        results["backlog"] = backlog(
            upstream, work, cached=200 if args.quick else 1000,
            others=10_000 if args.quick else 99_000,
        )  # fmt: skip
        print("backlog:", json.dumps(results["backlog"]), flush=True)
        results["latency"] = latency(upstream, work, trials=5 if args.quick else 20)
        print("latency:", json.dumps(results["latency"]), flush=True)
    (args.out / "follower.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
