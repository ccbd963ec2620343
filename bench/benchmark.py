"""The pypicache benchmark: one run, every server in its own process, all stopped at the end.

Servers, each on its own 127.0.0.1 port:

* the fake upstream (tests/support/fakeupstream.py, via bench/upstream_server.py) with the
  real wheels of a popular dependency tree, 200,000 file-less projects, four projects of
  PyPI's biggest shapes (300 to 11,000 files, bench/pypishape.py) and one 200 MB file that
  alone is throttled to 100 MB/s; every answer waits one round trip (``--rtt-ms``);
* pypicache (``pypicache serve``, 16 threads, fresh data dir) in front of it, and a fresh
  one with an empty data dir for every cold install;
* nginx serving a static copy of pypicache's warm pages and files;
* a bare waitress app answering the same page bytes from a dict;
* bench/follower_bench.py, last, with a fake upstream and pypicache processes of its own
  (the changelog follower's backlog and publish-to-listed latency).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from bench.bigpages import measure_big_pages
from bench.installs import Installer, Tool
from bench.loadgen import WrkResult, run_wrk, wrk_path
from bench.procs import CpuAccount, Server, Servers, free_port
from bench.pypishape import SIZES
from bench.report import INSTALL_SOURCES, evaluate, render_table
from bench.static_index import (
    HTML_ACCEPT,
    UV_ACCEPT,
    build_static_copy,
    nginx_path,
    write_nginx_config,
)
from tests.support.clients import find_uv

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / "cache"
RESULTS = BENCH / "results"

# Popular projects whose closure is 60-odd wheels, pure Python and compiled.
TOP_LEVEL = (
    "requests",
    "flask",
    "django",
    "boto3",
    "sphinx",
    "pytest",
    "black",
    "rich",
    "httpx",
    "jinja2",
    "sqlalchemy",
    "pydantic",
    "pyyaml",
    "cryptography",
    "click",
    "attrs",
)
MIN_WHEELS = 50
BULK_PROJECTS = 200_000
LARGE_BYTES = 200_000_000
THROTTLE = 100_000_000  # bytes/s
PAGE_PROJECT = "requests"
FILE_TARGET_SIZE = 1_250_000  # the hot file of issue 13's target
PYPICACHE_THREADS = 16
# Pages stay fresh for the whole run, so "warm" means served from memory, never revalidated.
PAGE_TTL = "3600"
HTTP_TIMEOUT = 120.0
LOOPBACK = "127.0.0.1,localhost,::1"
TMPFS_NEEDED = 6 << 30  # 8 concurrent venvs of the tree, with room to spare


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- wheels ----------------------------------------------------------------------------------


def ensure_wheels(cache: Path) -> Path:
    """The real wheels of TOP_LEVEL's closure for this Python, downloaded once."""
    wheels = cache / "wheels"
    stamp = wheels / ".top-level"
    wanted = "\n".join(TOP_LEVEL) + "\n"
    if (
        stamp.exists()
        and stamp.read_text() == wanted
        and len(list(wheels.glob("*.whl"))) >= MIN_WHEELS
    ):
        return wheels
    log(f"downloading the wheels of {len(TOP_LEVEL)} projects and their dependencies")
    partial = cache / "wheels.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # The machine's own pip configuration is fine here: it only decides where wheels come from.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "-d",
            str(partial),
            *TOP_LEVEL,
        ],
        check=True,
        timeout=1800,
    )
    count = len(list(partial.glob("*.whl")))
    if count < MIN_WHEELS:
        raise RuntimeError(f"only {count} wheels downloaded; the benchmark wants {MIN_WHEELS}+")
    (partial / ".top-level").write_text(wanted)
    shutil.rmtree(wheels, ignore_errors=True)
    partial.rename(wheels)
    return wheels


# -- servers ---------------------------------------------------------------------------------


def server_env(*, repo_on_path: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a server; ``bench`` and ``tests.support`` import from the repo.

    pypicache itself is started without the repository put first on the path, so it
    imports whatever the venv (or a PYTHONPATH the caller set) provides.
    """
    env = dict(os.environ, **extra)
    if repo_on_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_as_server(code: str) -> subprocess.CompletedProcess[str]:
    """Python ``code`` run with the interpreter, path and environment pypicache serves with."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(repo_on_path=False),
        cwd="/",
        check=False,
    )


def pypicache_origin() -> str:
    """Where the pypicache that the servers run is imported from."""
    try:
        done = run_as_server("import pypicache; print(pypicache.__file__)")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown: {exc}"
    return done.stdout.strip() or f"import failed: {done.stderr.strip()[-500:]}"


class Upstream:
    """The fake upstream process and its control endpoints."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.session = requests.Session()
        self.info: dict[str, Any] = self._get("info")

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def simple_url(self) -> str:
        return str(self.info["simple_url"])

    def _get(self, command: str) -> Any:
        response = self.session.get(f"{self.url}/_bench/{command}", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        self.session.post(f"{self.url}/_bench/clear", timeout=HTTP_TIMEOUT).raise_for_status()

    def log(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self._get("log")]

    def close(self) -> None:
        self.session.close()


def start_upstream(
    servers: Servers,
    wheels: Path,
    *,
    bulk: int = BULK_PROJECTS,
    large_bytes: int = LARGE_BYTES,
    throttle: int | None = THROTTLE,
    shapes: Sequence[int] = (),
    rtt_ms: float = 0.0,
) -> Upstream:
    """The fake upstream with ``wheels``, ``bulk`` file-less projects and a large file.

    ``large_bytes=0`` leaves the large file out, ``throttle=None`` the throttling;
    ``shapes`` are the file counts of PyPI-shaped projects, ``rtt_ms`` each answer's delay.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.upstream_server",
        "--port",
        str(port),
        "--wheels",
        str(wheels),
        "--bulk",
        str(bulk),
        "--large-bytes",
        str(large_bytes),
    ]
    if throttle is not None:
        command += ["--throttle", str(throttle)]
    if shapes:
        command += ["--shapes", ",".join(map(str, shapes))]
    if rtt_ms:
        command += ["--rtt-ms", str(rtt_ms)]
    server = servers.start(
        "upstream",
        command,
        port=port,
        ready_path="/_bench/info",
        ready_timeout=600,
        env=server_env(),
        cwd=ROOT,
    )
    return Upstream(server)


def pypicache_command() -> list[str]:
    script = Path(sys.executable).with_name("pypicache")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pypicache.cli"]


def start_pypicache(
    servers: Servers,
    name: str,
    upstream: Upstream,
    data_dir: Path,
    *,
    fresh: bool = True,
    env: Mapping[str, str] | None = None,
    stop_signal: signal.Signals = signal.SIGINT,
) -> Server:
    """``pypicache serve`` on ``data_dir``, emptied first unless not ``fresh`` (shared).

    ``env`` replaces the whole environment; by default the server's, with PAGE_TTL.
    """
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    command = [
        *pypicache_command(),
        "serve",
        "--port",
        str(port),
        "--threads",
        str(PYPICACHE_THREADS),
        "--upstream",
        upstream.simple_url,
        "--data-dir",
        str(data_dir),
    ]
    return servers.start(
        name,
        command,
        port=port,
        ready_path="/health",
        env=server_env(repo_on_path=False, PYPICACHE_PAGE_TTL=PAGE_TTL) if env is None else env,
        stop_signal=stop_signal,
    )


def start_nginx(servers: Servers, prefix: Path, root: Path) -> Server:
    nginx = nginx_path()
    if nginx is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    port = free_port()
    config = write_nginx_config(prefix, root, port)
    return servers.start(
        "nginx",
        [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)],
        port=port,
        ready_path="/health",
        stop_signal=signal.SIGTERM,
    )


def start_bare(servers: Servers, pages: Path) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.bare_server",
        "--port",
        str(port),
        "--pages",
        str(pages),
        "--threads",
        str(PYPICACHE_THREADS),
    ]
    return servers.start(
        "bare-waitress", command, port=port, ready_path="/health", env=server_env(), cwd=ROOT
    )


# -- measurements ----------------------------------------------------------------------------


def check_same_pages(servers: dict[str, str], project: str) -> None:
    """nginx, the bare app and pypicache must send the same bytes with the right type."""
    for accept, kind in ((HTML_ACCEPT, "text/html"), (UV_ACCEPT, "json")):
        bodies = {}
        for name, base in servers.items():
            response = requests.get(
                f"{base}/simple/{project}/", headers={"Accept": accept}, timeout=HTTP_TIMEOUT
            )
            response.raise_for_status()
            if kind not in response.headers.get("Content-Type", ""):
                raise RuntimeError(
                    f"{name} answered {response.headers.get('Content-Type')} for Accept {accept}"
                )
            bodies[name] = response.content
        if len(set(bodies.values())) != 1:
            raise RuntimeError(f"the servers disagree on /simple/{project}/ for Accept {accept}")


def load_cells(
    urls: dict[str, str],
    *,
    duration: float,
    rounds: int,
    headers: dict[str, str] | None = None,
    size: int | None = None,
) -> dict[str, dict[str, Any]]:
    """wrk at c1 and c8 against every URL, round-robin for ``rounds`` rounds; medians.

    Interleaving the servers spreads whatever else the machine does over all of them
    instead of over whichever happened to run at that moment.
    """
    for url in urls.values():
        run_wrk(url, connections=8, duration_s=1, headers=headers)  # warm-up
    samples: dict[str, dict[int, list[WrkResult]]] = {name: {1: [], 8: []} for name in urls}
    for _ in range(rounds):
        for connections in (1, 8):
            for name, url in urls.items():
                result = run_wrk(url, connections=connections, duration_s=duration, headers=headers)
                if result.errors:
                    raise RuntimeError(f"{name} answered {result.errors} errors for {url}")
                samples[name][connections].append(result)
    cells: dict[str, dict[str, Any]] = {}
    for name, by_connections in samples.items():
        cells[name] = {}
        for connections, runs in by_connections.items():
            cell: dict[str, Any] = {
                "requests_per_s": statistics.median(r.requests_per_s for r in runs),
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p90_ms": statistics.median(r.p90_ms for r in runs),
                "p99_ms": statistics.median(r.p99_ms for r in runs),
                "runs": [r.as_dict() for r in runs],
            }
            if size is not None:
                cell["mb_per_s"] = cell["requests_per_s"] * size / 1e6
            cells[name][f"c{connections}"] = cell
    return cells


def measure_pages(targets: dict[str, str], duration: float, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "project": PAGE_PROJECT,
        "duration_s": duration,
        "rounds": rounds,
    }
    for fmt, accept in (("html", HTML_ACCEPT), ("json", UV_ACCEPT)):
        urls = {name: f"{base}/simple/{PAGE_PROJECT}/" for name, base in targets.items()}
        results[fmt] = load_cells(
            urls, duration=duration, rounds=rounds, headers={"Accept": accept}
        )
        for name, cells in results[fmt].items():
            log(
                f"  {fmt} {name}: c1 {cells['c1']['requests_per_s']:.0f} req/s"
                f" p50 {cells['c1']['p50_ms']:.3f} ms; c8 {cells['c8']['requests_per_s']:.0f} req/s"
            )
    return results


def measure_files(
    targets: dict[str, str], files: list[dict[str, Any]], duration: float, rounds: int
) -> dict[str, Any]:
    """A wheel of a few MB (throughput) and a small .metadata file (per-request cost)."""
    chosen = min(files, key=lambda f: abs(f["size"] - FILE_TARGET_SIZE))
    path = f"/packages/{chosen['project']}/{quote(chosen['filename'])}"
    small = min((f for f in files if f["has_metadata"]), key=lambda f: f["size"])
    small_path = f"/packages/{small['project']}/{quote(small['filename'])}.metadata"
    small_size = len(requests.get(targets["nginx"] + small_path, timeout=HTTP_TIMEOUT).content)
    for name, base in targets.items():
        for url, size in ((base + path, chosen["size"]), (base + small_path, small_size)):
            response = requests.get(url, timeout=HTTP_TIMEOUT)
            response.raise_for_status()
            if len(response.content) != size:
                raise RuntimeError(f"{name} sent {len(response.content)} bytes of {url}")
    big = load_cells(
        {name: base + path for name, base in targets.items()},
        duration=duration,
        rounds=rounds,
        size=chosen["size"],
    )
    little = load_cells(
        {name: base + small_path for name, base in targets.items()},
        duration=duration,
        rounds=rounds,
        size=small_size,
    )
    for name in targets:
        log(
            f"  {name}: {big[name]['c1']['mb_per_s']:.0f} MB/s sequential;"
            f" small file c1 {little[name]['c1']['requests_per_s']:.0f} req/s"
            f" p50 {little[name]['c1']['p50_ms']:.3f} ms"
        )
    return {
        "filename": chosen["filename"],
        "size": chosen["size"],
        "duration_s": duration,
        "rounds": rounds,
        "servers": big,
        "small": {"path": small_path, "size": small_size, "servers": little},
    }


def summarize_upstream(label: str, entries: list[tuple[str, str]]) -> dict[str, Any]:
    """Pages, files and metadata files the upstream served, and what it served twice."""
    pages, files, metadata, other = [], [], [], []
    for method, raw in entries:
        path = raw.split("?", 1)[0]
        if path.startswith("/simple/"):
            pages.append(path)
        elif path.startswith("/packages/") and path.endswith(".metadata"):
            metadata.append(path)
        elif path.startswith("/packages/"):
            files.append(path)
        else:
            other.append(f"{method} {path}")
    counts = Counter(pages + files + metadata)
    return {
        "label": label,
        "pages": len(pages),
        "unique_pages": len(set(pages)),
        "files": len(files),
        "unique_files": len(set(files)),
        "metadata": len(metadata),
        "unique_metadata": len(set(metadata)),
        "other": len(other),
        "other_requests": other[:20],
        "duplicates": {path: n for path, n in counts.items() if n > 1},
        "errors": 0,
    }


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


class InstallBench:
    def __init__(
        self,
        servers: Servers,
        upstream: Upstream,
        nginx: Server,
        warm: Server,
        installer: Installer,
        work: Path,
        expected: int,
    ) -> None:
        self.servers = servers
        self.upstream = upstream
        self.nginx = nginx
        self.warm = warm
        self.installer = installer
        self.work = work
        self.expected = expected
        self.cold_peaks: list[int] = []
        self.cold_started: list[int] = []
        self.cold_summaries: list[dict[str, Any]] = []
        self.warm_upstream_requests = 0
        self._cold_serial = 0

    def _cold_server(self) -> Server:
        self._cold_serial += 1
        data_dir = self.work / f"data-cold-{self._cold_serial}"
        server = start_pypicache(
            self.servers, f"pypicache-cold-{self._cold_serial}", self.upstream, data_dir
        )
        peak = server.peak_rss_kb()
        if peak is not None:
            self.cold_started.append(peak)
        return server

    def _stop_cold(self, server: Server) -> None:
        peak = server.peak_rss_kb()
        if peak is not None:
            self.cold_peaks.append(peak)
        self.servers.stop(server)
        shutil.rmtree(self.work / f"data-cold-{self._cold_serial}", ignore_errors=True)

    def _check(self, result: dict[str, Any], what: str) -> None:
        if not result["ok"]:
            log(f"  {what} FAILED:\n{result['error']}")
        elif result["installed"] != self.expected:
            result["ok"] = False
            result["error"] = f"installed {result['installed']} distributions, not {self.expected}"
            log(f"  {what}: {result['error']}")

    def one(self, tool: Tool, source: str, rep: int) -> dict[str, Any]:
        label = f"{source}-{rep}"
        self.upstream.clear()
        if source == "pypicache-cold":
            server = self._cold_server()
            try:
                self.upstream.clear()
                server_cpu = server.cpu_seconds()
                result = self.installer.run(tool, server.url + "/simple/", label).as_dict()
                result["server_cpu_s"] = _spent(server.cpu_seconds(), server_cpu)
                summary = summarize_upstream(f"{tool} cold #{rep + 1}", self.upstream.log())
                summary["errors"] = 0 if result["ok"] else 1
                self.cold_summaries.append(summary)
            finally:
                self._stop_cold(server)
        else:
            base = {
                "upstream": self.upstream.url,
                "nginx": self.nginx.url,
                "pypicache-warm": self.warm.url,
            }[source]
            # nginx's work is done by its workers, not the process started: not counted.
            server = {"upstream": self.upstream.server, "pypicache-warm": self.warm}.get(source)
            server_cpu = server.cpu_seconds() if server is not None else None
            result = self.installer.run(tool, base + "/simple/", label).as_dict()
            if server is not None:
                result["server_cpu_s"] = _spent(server.cpu_seconds(), server_cpu)
            if source == "pypicache-warm":
                summary = summarize_upstream("warm", self.upstream.log())
                self.warm_upstream_requests += (
                    summary["pages"] + summary["files"] + summary["metadata"]
                )
        self._check(result, f"{tool} from {source}")
        return result

    def run(self, repeats: dict[str, int]) -> dict[str, Any]:
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            tool: {source: [] for source in INSTALL_SOURCES} for tool in ("uv", "pip")
        }
        # Interleaved, so drift over the run (page cache, disk, the machine) hits every source.
        for rep in range(max(repeats.values())):
            for tool in ("uv", "pip"):
                if rep >= repeats[tool]:
                    continue
                for source in INSTALL_SOURCES:
                    result = self.one(tool, source, rep)  # type: ignore[arg-type]
                    runs[tool][source].append(result)
                    log(f"  {tool} from {source} #{rep + 1}: {result['seconds']:.2f} s")
        return {
            "repeats": repeats,
            "expected_distributions": self.expected,
            "venv_dir": str(self.installer.workdir),
            "runs": runs,
        }

    def concurrent(self, clients: int) -> dict[str, Any]:
        server = self._cold_server()
        try:
            self.upstream.clear()
            started = time.monotonic()
            results = self.installer.run_concurrently(
                "uv", server.url + "/simple/", "conc", clients
            )
            wall = time.monotonic() - started
            summary = summarize_upstream(f"uv cold, {clients} clients", self.upstream.log())
        finally:
            self._stop_cold(server)
        all_ok = all(r.ok and r.installed == self.expected for r in results)
        summary.update(
            clients=clients,
            wall_s=wall,
            all_ok=all_ok,
            errors=sum(not (r.ok and r.installed == self.expected) for r in results),
            installs=[r.as_dict() for r in results],
            references={
                source: self._concurrent_reference(source, base, clients)
                for source, base in (("upstream", self.upstream.url), ("nginx", self.nginx.url))
            },
        )
        return summary

    def _concurrent_reference(self, source: str, base: str, clients: int) -> dict[str, Any]:
        """The same concurrent installs straight from ``source``, for the wall time."""
        started = time.monotonic()
        results = self.installer.run_concurrently("uv", base + "/simple/", source, clients)
        return {
            "wall_s": time.monotonic() - started,
            "all_ok": all(r.ok and r.installed == self.expected for r in results),
        }


def timed_download(
    url: str, headers: dict[str, str] | None = None, status: int = 200
) -> dict[str, Any]:
    """Time to the first body byte and to the last, reading as fast as the socket gives."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=HTTP_TIMEOUT)
    try:
        started = time.perf_counter()
        connection.request("GET", parts.path, headers=headers or {})
        response = connection.getresponse()
        headers_at = time.perf_counter()
        if response.status != status:
            raise RuntimeError(f"{url} answered {response.status}, not {status}")
        first = response.read1(65536)
        first_at = time.perf_counter()
        total = len(first)
        while chunk := response.read1(1 << 20):
            total += len(chunk)
        ended = time.perf_counter()
    finally:
        connection.close()
    return {
        "headers_ms": (headers_at - started) * 1e3,
        "ttfb_ms": (first_at - started) * 1e3,
        "total_s": ended - started,
        "bytes": total,
    }


@contextlib.contextmanager
def fresh_pypicache(
    servers: Servers,
    upstream: Upstream,
    work: Path,
    name: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A pypicache with an empty data dir, stopped and removed afterwards."""
    data_dir = work / f"data-{name}"
    server = start_pypicache(servers, name, upstream, data_dir, env=env)
    try:
        yield server
    finally:
        servers.stop(server)
        shutil.rmtree(data_dir, ignore_errors=True)


def _median_of(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The per-field median of ``runs[i][key]`` (dicts of numbers)."""
    cells = [run[key] for run in runs]
    return {field: statistics.median(cell[field] for cell in cells) for field in cells[0]}


def large_file_once(upstream: Upstream, pypicache: Server) -> dict[str, Any]:
    large = upstream.info["large"]
    direct = timed_download(upstream.url + large["path"])
    # The page first, so the file download times the file alone.
    page = timed_download(f"{pypicache.url}/simple/{large['project']}/", {"Accept": UV_ACCEPT})
    url = f"{pypicache.url}/packages/{large['project']}/{quote(large['filename'])}"
    cold = timed_download(url)
    warm = timed_download(url)
    for name, result in (("direct", direct), ("cold", cold), ("warm", warm)):
        if result["bytes"] != large["size"]:
            raise RuntimeError(f"{name} download of the large file gave {result['bytes']} bytes")
    log(
        f"  direct {direct['ttfb_ms']:.1f} ms / {direct['total_s']:.2f} s;"
        f" pypicache cold {cold['ttfb_ms']:.1f} ms / {cold['total_s']:.2f} s (first byte / total)"
    )
    return {"page": page, "direct": direct, "pypicache_cold": cold, "pypicache_warm": warm}


# What uv asks of a wheel without a .metadata file first: its last bytes (the zip's index).
TAIL = 65_536


def tail_once(upstream: Upstream, pypicache: Server) -> dict[str, Any]:
    """A range request for the last bytes of a file nobody fetched yet, and the file after it."""
    large = upstream.info["large"]
    # First and last byte spelled out: the fake, like PyPI's CDN, ignores suffix ranges.
    tail = {"Range": f"bytes={large['size'] - TAIL}-{large['size'] - 1}"}
    direct = timed_download(upstream.url + large["path"], tail, status=206)
    timed_download(f"{pypicache.url}/simple/{large['project']}/", {"Accept": UV_ACCEPT})
    url = f"{pypicache.url}/packages/{large['project']}/{quote(large['filename'])}"
    cold = timed_download(url, tail, status=206)
    for name, result in (("direct", direct), ("pypicache", cold)):
        if result["bytes"] != TAIL:
            raise RuntimeError(
                f"{name} range request of the large file gave {result['bytes']} bytes"
            )
    return {"direct": direct, "pypicache_cold": cold}


def measure_large_file(
    upstream: Upstream, main_server: Server, servers: Servers, work: Path, repeats: int
) -> dict[str, Any]:
    """The first run on the main server (its memory counts), the others on fresh servers."""
    runs = [large_file_once(upstream, main_server)]
    for rep in range(1, repeats):
        with fresh_pypicache(servers, upstream, work, f"pypicache-large-{rep}") as server:
            runs.append(large_file_once(upstream, server))
    tails = []
    for rep in range(repeats):
        with fresh_pypicache(servers, upstream, work, f"pypicache-tail-{rep}") as server:
            tails.append(tail_once(upstream, server))
    large = upstream.info["large"]
    return {
        "size": large["size"],
        "throttle": THROTTLE,
        "filename": large["filename"],
        "repeats": repeats,
        "direct": _median_of(runs, "direct"),
        "pypicache_cold": _median_of(runs, "pypicache_cold"),
        "pypicache_warm": _median_of(runs, "pypicache_warm"),
        "tail": {
            "bytes": TAIL,
            "direct": _median_of(tails, "direct"),
            "pypicache_cold": _median_of(tails, "pypicache_cold"),
        },
        "runs": runs,
    }


def project_list_cold(pypicache: Server) -> dict[str, float]:
    cold = timed_download(pypicache.url + "/simple/", {"Accept": HTML_ACCEPT})
    first_json = timed_download(pypicache.url + "/simple/", {"Accept": UV_ACCEPT})
    # As sent to pip and uv, which take gzip.
    encoded = timed_download(
        pypicache.url + "/simple/", {"Accept": UV_ACCEPT, "Accept-Encoding": "gzip"}
    )
    log(f"  cold {cold['total_s'] * 1e3:.0f} ms, first JSON {first_json['total_s'] * 1e3:.0f} ms")
    return {
        "cold_html_ms": cold["total_s"] * 1e3,
        "first_json_ms": first_json["total_s"] * 1e3,
        "html_bytes": cold["bytes"],
        "json_bytes": first_json["bytes"],
        "json_gzip_bytes": encoded["bytes"],
    }


def measure_project_list(
    upstream: Upstream,
    main_server: Server,
    servers: Servers,
    work: Path,
    repeats: int,
    duration: float,
) -> dict[str, Any]:
    """Cold: the first request of a server (main, then fresh ones); warm: wrk on main."""
    html = {"Accept": HTML_ACCEPT}
    upstream_first = timed_download(upstream.url + "/simple/", html)
    upstream_again = timed_download(upstream.url + "/simple/", html)
    runs = [project_list_cold(main_server)]
    for rep in range(1, repeats):
        with fresh_pypicache(servers, upstream, work, f"pypicache-list-{rep}") as server:
            runs.append(project_list_cold(server))
    results: dict[str, Any] = {
        "projects": BULK_PROJECTS + len({f["project"] for f in upstream.info["files"]}) + 1,
        "repeats": repeats,
        **{key: statistics.median(run[key] for run in runs) for key in runs[0]},
        "upstream_first_ms": upstream_first["total_s"] * 1e3,
        "upstream_again_ms": upstream_again["total_s"] * 1e3,
        "runs": runs,
    }
    for fmt, accept in (("html", HTML_ACCEPT), ("json", UV_ACCEPT)):
        result = run_wrk(
            main_server.url + "/simple/",
            connections=1,
            duration_s=duration,
            headers={"Accept": accept},
        )
        if result.errors:
            raise RuntimeError(f"/simple/ answered {result.errors} errors")
        results[f"warm_{fmt}"] = result.as_dict()
        log(f"  warm {fmt}: p50 {result.p50_ms:.1f} ms")
    return results


def measure_follower(work: Path, quick: bool, rtt_ms: float) -> dict[str, Any]:
    """bench/follower_bench.py in a process of its own (its fake upstream runs in it).

    Full run: the 100,000-entry backlog and 20 latency trials (about two minutes);
    quick: a 10,000-entry backlog and 5 trials.
    """
    out = work / "follower"
    command = [sys.executable, str(BENCH / "follower_bench.py"), "--rtt-ms", str(rtt_ms)]
    command += ["--out", str(out), *(["--quick"] if quick else [])]
    with (work / "logs" / "follower_bench.log").open("w") as output:
        subprocess.run(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=server_env(repo_on_path=False),  # it puts the repo on its path itself
            cwd=ROOT,
            timeout=900,
            check=True,
        )
    results = json.loads((out / "follower.json").read_text())
    backlog, latency = results["backlog"], results["latency"]
    log(
        f"  backlog of {backlog['entries']:,} entries: {backlog['seconds_to_catch_up']:.1f} s,"
        f" {backlog['upstream_page_requests']} page requests;"
        f" latency p50 {latency['p50_seconds']:.2f} s"
    )
    return results


# -- the run ---------------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable: {exc}"
        return (
            (done.stdout or done.stderr).strip().splitlines()[0]
            if (done.stdout or done.stderr)
            else "?"
        )

    return {
        "uv": first_line([find_uv(), "--version"]),
        "pip": first_line([sys.executable, "-m", "pip", "--version"]),
        "nginx": first_line([nginx_path() or "nginx", "-v"]),
        "wrk": first_line([wrk_path() or "wrk", "--version"]),
    }


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def bypass_proxy_for_loopback() -> None:
    """The servers are on loopback: no proxy for them, for us and for the clients we start."""
    for key in ("NO_PROXY", "no_proxy"):
        os.environ[key] = ",".join(filter(None, [os.environ.get(key, ""), LOOPBACK]))


def base_parser(prog: str, description: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick, --out, --keep, --ref."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--ref",
        metavar="GIT_REF",
        help="benchmark pypicache as committed at this ref (e.g. HEAD), not the working tree",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(
        "python bench/run.py", __doc__.split("\n\n")[0], "1 repeat, shorter load runs"
    )
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=20.0,
        help="round trip the fake upstream adds to every answer (default 20)",
    )
    return parser.parse_args(argv)


def table_with_targets(results: dict[str, Any]) -> str:
    """The report's table, once ``results`` says which targets were met."""
    targets = evaluate(results)
    results["targets"] = [t.as_dict() for t in targets]
    return render_table(results, targets)


def write_results(
    out: Path, name: str, results: dict[str, Any], render: Callable[[dict[str, Any]], str]
) -> None:
    """``name``.json, and ``render``'s table of it in ``name``.txt and printed.

    A partial run (an error) still writes what it measured.
    """
    try:
        table = render(results)
    except Exception as exc:  # never hide the error that ended the run
        table = f"(no table: {exc!r})"
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / f"{name}.txt").write_text(table + "\n")
    print()
    print(table)
    print(f"\nJSON: {json_path}")


def venv_base(work: Path, stamp: str) -> Path:
    """Where the install venvs go: tmpfs when there is room, else the work directory.

    Writing ~250 MB of small files per install to this machine's disk takes 1 to 12 s,
    varying from run to run, which would drown the servers' share of an install; on tmpfs
    the venv, TMPDIR and UV_CACHE_DIR still share one filesystem, so uv links, not copies.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > TMPFS_NEEDED:
        return shm / f"pypicache-bench-{stamp}"
    return work / "venvs"


@dataclass
class RunDirs:
    """One run's stamp and directories: results, the work directory, the install venvs."""

    stamp: str
    out: Path
    work: Path
    venvs: Path

    @classmethod
    def make(cls, out: Path, work_prefix: str) -> RunDirs:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = out.resolve()
        work = out / f"{work_prefix}{stamp}"
        work.mkdir(parents=True)
        return cls(stamp, out, work, venv_base(work, stamp))

    def tidy(self, keep: bool, kept: Sequence[str] = ("logs",)) -> None:
        """Remove the venvs, gzip the big logs and, unless ``keep``, all of work but ``kept``."""
        shutil.rmtree(self.venvs, ignore_errors=True)
        compress_logs(self.work / "logs")
        if not keep:
            for child in self.work.iterdir():
                if child.name not in kept:
                    shutil.rmtree(child, ignore_errors=True)


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "pypicache", "migrations", "setup.cfg")
    return {"commit": git("rev-parse", "--short", "HEAD"), "pypicache_dirty": str(bool(dirty))}


def _extract(commit: str, path: str, destination: Path) -> None:
    """``git archive`` ``path`` as it is at ``commit``, unpacked into ``destination``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, path],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")


def export_pypicache(ref: str, destination: Path, *, migrations: bool = False) -> str:
    """``git archive`` the pypicache package at ``ref`` into ``destination``; its commit.

    The servers then import that snapshot (it goes first on PYTHONPATH), so a working
    tree that changes during the run changes nothing measured.  ``migrations`` adds them
    where setup.cfg's package_dir puts them: without them ``pypicache.migrations`` would
    resolve, through the editable install, to the working tree's migrations, not the ref's.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    destination.mkdir(parents=True)
    _extract(commit, "pypicache", destination)
    if migrations:
        _extract(commit, "migrations", destination / "pypicache")
    return commit


def measure_ref(ref: str | None, snapshot: Path, *, migrations: bool = False) -> str:
    """With a ``ref``, the servers import its snapshot (see export_pypicache); what they run."""
    if not ref:
        return "the venv's pypicache (the working tree)"
    commit = export_pypicache(ref, snapshot, migrations=migrations)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(snapshot), os.environ.get("PYTHONPATH")])
    )
    return f"{ref} = {commit}"


def run_meta(stamp: str, quick: bool) -> dict[str, Any]:
    """The start of a run's "meta": when, how, on what machine, at which commit."""
    return {
        "started": stamp,
        "quick": quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_state(),
    }


def pypicache_meta(measured: str) -> dict[str, Any]:
    """How the pypicache servers run, and which pypicache they import."""
    return {
        "threads": PYPICACHE_THREADS,
        "page_ttl": PAGE_TTL,
        "measured": measured,
        "imported_from": pypicache_origin(),
    }


def rss_of(server: Server) -> dict[str, int | None]:
    return {"peak_kb": server.peak_rss_kb(), "rss_kb": server.rss_kb()}


def compress_logs(directory: Path, above: int = 1 << 20) -> None:
    """gzip the big logs (pypicache writes an access log line per request)."""
    for path in directory.glob("*.log"):
        if path.stat().st_size > above:
            with path.open("rb") as source, gzip.open(f"{path}.gz", "wb") as target:
                shutil.copyfileobj(source, target)
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    bypass_proxy_for_loopback()
    missing = [name for name, path in (("nginx", nginx_path()), ("wrk", wrk_path())) if not path]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install -y nginx wrk)", file=sys.stderr)
        return 2

    repeats = {"uv": 1, "pip": 1} if args.quick else {"uv": 5, "pip": 3}
    cold_repeats = 1 if args.quick else 3
    load_s = 2.0 if args.quick else 3.0
    rounds = 1 if args.quick else 3
    started = time.monotonic()
    run = RunDirs.make(args.out, "work-")
    stamp, out, work, venvs = run.stamp, run.out, run.work, run.venvs

    measured = measure_ref(args.ref, work / "pypicache-src", migrations=True)
    wheels = ensure_wheels(CACHE)
    wheel_count = len(list(wheels.glob("*.whl")))
    results: dict[str, Any] = {
        "meta": {
            **run_meta(stamp, args.quick),
            "tools": tool_versions(),
            "tree": f"{len(TOP_LEVEL)} top-level projects, {wheel_count} wheels: "
            + " ".join(TOP_LEVEL),
            "pypicache": pypicache_meta(measured),
            "work_dir": str(work),
            "venv_dir": str(venvs),
        }
    }
    rss: dict[str, Any] = {}
    results["rss"] = rss
    cpu = CpuAccount()
    other_cpu: dict[str, dict[str, float]] = {}
    results["meta"]["other_cpu"] = other_cpu
    current = ["setup"]

    def mark(phase: str) -> None:
        """Log a phase; note how much CPU other processes took during the previous one."""
        other_cpu[current[0]] = cpu.phase()
        current[0] = phase
        log(phase)

    log(f"results and logs under {out}; install venvs under {venvs}")
    try:
        with Servers(work / "logs") as servers:
            log(
                "starting the fake upstream (wheels, 200,000 projects, PyPI-shaped projects,"
                f" 200 MB file, {args.rtt_ms:g} ms round trip)"
            )
            upstream = start_upstream(servers, wheels, shapes=SIZES, rtt_ms=args.rtt_ms)
            projects = sorted({f["project"] for f in upstream.info["files"]})
            results["meta"]["rtt_ms"] = args.rtt_ms
            log(f"  {upstream.simple_url}: {len(projects)} projects")
            main_server = start_pypicache(servers, "pypicache", upstream, work / "data-main")
            phases: dict[str, Any] = {"started": rss_of(main_server)}
            rss["pypicache_main_phases"] = phases
            log(f"pypicache at {main_server.url}; warming it and copying pages and files")
            static = build_static_copy(main_server.url, projects, work / "static")
            phases["after warm-up (cold fills of every page and file)"] = rss_of(main_server)
            log(f"  static copy: {static.projects} projects, {static.files} files")
            nginx = start_nginx(servers, work / "nginx", static.root)
            bare = start_bare(servers, static.root / "simple")
            check_same_pages(
                {"nginx": nginx.url, "bare": bare.url, "pypicache": main_server.url}, PAGE_PROJECT
            )

            mark("a) hot project pages")
            results["pages"] = measure_pages(
                {
                    "nginx": nginx.url,
                    "bare waitress": bare.url,
                    "pypicache": main_server.url,
                    "fake upstream": upstream.url,
                },
                load_s,
                rounds,
            )
            phases["after hot pages"] = rss_of(main_server)
            upstream.clear()  # wrk's requests to the fake filled its log

            mark("b) hot file downloads")
            results["files"] = measure_files(
                {"nginx": nginx.url, "pypicache": main_server.url},
                upstream.info["files"],
                load_s,
                rounds,
            )
            phases["after hot files"] = rss_of(main_server)

            mark("c) installs")
            installs = InstallBench(
                servers,
                upstream,
                nginx,
                main_server,
                Installer(venvs, TOP_LEVEL),
                work,
                wheel_count,
            )
            results["installs"] = installs.run(repeats)
            phases["after installs"] = rss_of(main_server)
            mark("d) 8 concurrent cold uv installs")
            concurrent = installs.concurrent(8)
            results["upstream_requests"] = {
                "expected": {"pages": len(projects), "files": wheel_count},
                "cold": installs.cold_summaries,
                "concurrent": concurrent,
                "warm_upstream_requests": installs.warm_upstream_requests,
            }
            rss["pypicache_cold_started_kb"] = installs.cold_started
            rss["pypicache_cold_peaks_kb"] = installs.cold_peaks

            mark("e) 200 MB file through pypicache, upstream throttled")
            results["large_file"] = measure_large_file(
                upstream, main_server, servers, work, cold_repeats
            )
            phases["after the 200 MB file"] = rss_of(main_server)

            mark("g) /simple/ with 200,000 projects")
            results["project_list"] = measure_project_list(
                upstream, main_server, servers, work, cold_repeats, load_s
            )
            phases["after /simple/"] = rss_of(main_server)

            mark("h) cold and refreshed pages of PyPI-sized projects")
            revalidating = server_env(repo_on_path=False, PYPICACHE_PAGE_TTL="0")
            results["big_pages"] = measure_big_pages(
                upstream.url,
                upstream.info["shapes"],
                lambda name: fresh_pypicache(servers, upstream, work, name, revalidating),
                timed_download,
                cold_repeats,
                log,
            )
            for project in upstream.info["shapes"]:
                timed_download(f"{main_server.url}/simple/{project}/", {"Accept": UV_ACCEPT})
            phases["after the PyPI-sized pages"] = rss_of(main_server)

            mark("f) pypicache memory")
            rss.update(
                pypicache_main_peak_kb=main_server.peak_rss_kb(),
                pypicache_main_rss_kb=main_server.rss_kb(),
                pypicache_cold_peak_kb=max(installs.cold_peaks, default=None),
            )
            upstream.close()

            mark("i) changelog follower: backlog and publish-to-listed latency")
            results["follower"] = measure_follower(work, args.quick, args.rtt_ms)
    finally:
        other_cpu[current[0]] = cpu.phase()
        results["meta"]["duration_s"] = time.monotonic() - started
        write_results(out, f"bench-{stamp}", results, table_with_targets)
        run.tidy(args.keep, ("logs", "pypicache-src"))
    return 0
