"""Several upstreams and named indexes: what they cost a hot page and a cold install.

    .venv/bin/python bench/sources.py [--quick] [--out DIR] [--keep] [--ref GIT_REF]

1. Hot pages (wrk, JSON as uv asks, 8 connections): pypicache with its one upstream, as
   before several upstreams existed, against pypicache with three upstreams and ten
   indexes, warm on the same project.  Its /simple/ page resolves through the two
   upstreams listed first (neither has the project) to the third; the page of the
   tenth of ten chained indexes goes through every one of them.  Target: /simple/
   within 5% of the one-upstream pypicache.
2. Cold ``uv pip install`` of the benchmark's set, fresh data each time, against the
   same three upstreams: through /simple/, and through an index with two bases.

It starts its own fake upstreams (the benchmark's real wheels, ``--rtt-ms`` per
answer) and stops them at the end; only wrk is needed besides the venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` and `tests.support` import from the repository

import requests  # noqa: E402

from bench.benchmark import CACHE as WHEEL_CACHE  # noqa: E402
from bench.benchmark import (  # noqa: E402
    PAGE_PROJECT,
    PAGE_TTL,
    PYPICACHE_THREADS,
    TOP_LEVEL,
    RunDirs,
    Upstream,
    base_parser,
    bypass_proxy_for_loopback,
    ensure_wheels,
    log,
    measure_ref,
    pypicache_command,
    pypicache_meta,
    raise_on_sigterm,
    run_meta,
    server_env,
    start_pypicache,
    write_results,
)
from bench.installs import Installer  # noqa: E402
from bench.loadgen import run_wrk, wrk_path  # noqa: E402
from bench.procs import Server, Servers, free_port  # noqa: E402
from bench.static_index import UV_ACCEPT  # noqa: E402

CONNECTIONS = 8
INDEXES = 10
# The upstreams asked before the one that has the projects: empty indexes of their own.
VENDORS = ("vendor-a", "vendor-b")
TWO_BASES = "two-bases"
HOT_TARGET = 0.95


def start_fake(servers: Servers, name: str, wheels: Path, rtt_ms: float) -> Upstream:
    """A fake upstream serving ``wheels`` and 20 file-less projects (an empty directory:
    an index without any project the benchmark installs)."""
    port = free_port()
    command = [
        sys.executable, "-m", "bench.upstream_server", "--port", str(port),
        "--wheels", str(wheels), "--bulk", "20", "--large-bytes", "0", "--rtt-ms", str(rtt_ms),
    ]  # fmt: skip
    server = servers.start(
        name, command, port=port, ready_path="/_bench/info", env=server_env(), cwd=ROOT
    )
    return Upstream(server)


class ManySources:
    """pypicache with the vendors' upstreams before the real one, and ten chained indexes
    plus one with two bases, each on a data dir of its own."""

    def __init__(self, servers: Servers, upstreams: dict[str, Upstream], work: Path) -> None:
        self.servers = servers
        self.work = work
        self.env = {
            **server_env(repo_on_path=False, PYPICACHE_PAGE_TTL=PAGE_TTL),
            "PYPICACHE_FOLLOW_METHOD": "off",
            "PYPICACHE_UPSTREAMS": " ".join(f"{n}={u.simple_url}" for n, u in upstreams.items()),
        }
        self._made = 0

    def _cli(self, data_dir: Path, *args: str) -> None:
        done = subprocess.run(
            [*pypicache_command(), "index", *args, "--data-dir", str(data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pypicache index {' '.join(args)}: {done.stderr.strip()}")

    def start(self, label: str) -> Server:
        self._made += 1
        data_dir = self.work / f"data-{label}-{self._made}"
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        below = "main"
        for n in range(1, INDEXES):
            self._cli(data_dir, "create", f"team{n}", "--bases", below)
            below = f"team{n}"
        self._cli(data_dir, "create", TWO_BASES, "--bases", f"{VENDORS[0]},pypi")
        port = free_port()
        command = [
            *pypicache_command(), "serve", "--port", str(port),
            "--threads", str(PYPICACHE_THREADS), "--data-dir", str(data_dir),
        ]  # fmt: skip
        return self.servers.start(
            f"pypicache-{label}-{self._made}",
            command,
            port=port,
            ready_path="/health",
            env=self.env,
            stop_signal=signal.SIGINT,
        )


def _get(url: str) -> None:
    response = requests.get(url, headers={"Accept": UV_ACCEPT}, timeout=60)
    response.raise_for_status()


def hot_pages(one: Server, many: Server, duration: float, rounds: int) -> dict[str, Any]:
    """Requests/s of the same warm page: one upstream, several (/simple/), ten indexes deep."""
    deepest = f"team{INDEXES - 1}"
    targets = {
        "one upstream, /simple/": f"{one.url}/simple/{PAGE_PROJECT}/",
        "three upstreams, /simple/": f"{many.url}/simple/{PAGE_PROJECT}/",
        f"three upstreams, /i/{deepest}/ (10 indexes deep)": (
            f"{many.url}/i/{deepest}/simple/{PAGE_PROJECT}/"
        ),
    }
    for url in targets.values():
        _get(url)
    runs: dict[str, list[float]] = {label: [] for label in targets}
    for _ in range(rounds):
        for label, url in targets.items():  # interleaved: the machine's noise falls on all
            result = run_wrk(
                url, connections=CONNECTIONS, duration_s=duration, headers={"Accept": UV_ACCEPT}
            )
            if result.errors:
                raise RuntimeError(f"wrk saw {result.errors} errors at {url}")
            runs[label].append(result.requests_per_s)
    return {label: {"runs": rps, "median": statistics.median(rps)} for label, rps in runs.items()}


def cold_installs(
    many: ManySources, servers: Servers, installer: Installer, repeats: int
) -> dict[str, Any]:
    """uv installs on fresh data: through /simple/ and through the index with two bases."""
    paths = {"/simple/": "/simple/", f"/i/{TWO_BASES}/ (two bases)": f"/i/{TWO_BASES}/simple/"}
    runs: dict[str, list[float]] = {label: [] for label in paths}
    for rep in range(repeats):
        for label, path in paths.items():
            server = many.start(f"cold{rep}")
            try:
                done = installer.run("uv", server.url + path, f"cold-{rep}")
            finally:
                servers.stop(server)
            if not done.ok:
                raise RuntimeError(f"uv through {label}: {done.error}")
            runs[label].append(done.seconds)
    return {label: {"runs": s, "median": statistics.median(s)} for label, s in runs.items()}


def render(results: dict[str, Any]) -> str:
    out = [f"pypicache {results['meta']['pypicache']['measured']}", ""]
    hot = results.get("hot_pages", {})
    if hot:
        out.append(f"hot page {PAGE_PROJECT} (JSON, c{CONNECTIONS}), requests/s, median")
        base = hot["one upstream, /simple/"]["median"]
        for label, cell in hot.items():
            out.append(f"   {label:48} {cell['median']:8.0f}   {cell['median'] / base:5.2f}x")
        ratio = hot["three upstreams, /simple/"]["median"] / base
        verdict = "PASS" if ratio >= HOT_TARGET else "MISS"
        out.append(f"   {verdict} three upstreams and ten indexes: {ratio:.2f}x (target >= 0.95x)")
        out.append("")
    cold = results.get("cold_installs", {})
    if cold:
        out.append("cold uv install of the benchmark set, seconds, median")
        base = cold["/simple/"]["median"]
        for label, cell in cold.items():
            out.append(f"   {label:48} {cell['median']:8.2f}   {cell['median'] / base:5.2f}x")
    return "\n".join(out)


def main() -> int:
    parser = base_parser("python bench/sources.py", __doc__.split("\n\n")[0], "1 round")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="fake upstreams' round trip")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    bypass_proxy_for_loopback()
    if wrk_path() is None:
        print("missing: wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    run = RunDirs.make(args.out, "sources-")
    measured = measure_ref(args.ref, run.work / "pypicache-src", migrations=True)
    results: dict[str, Any] = {
        "meta": {**run_meta(run.stamp, args.quick), "pypicache": pypicache_meta(measured)}
    }
    duration, rounds, repeats = (2.0, 1, 1) if args.quick else (3.0, 3, 3)
    started = time.monotonic()
    try:
        with Servers(run.work / "logs") as servers:
            wheels = ensure_wheels(WHEEL_CACHE)
            empty = run.work / "no-wheels"
            empty.mkdir()
            upstreams = {name: start_fake(servers, name, empty, args.rtt_ms) for name in VENDORS}
            upstreams["pypi"] = start_fake(servers, "pypi", wheels, args.rtt_ms)
            env = {**server_env(repo_on_path=False, PYPICACHE_PAGE_TTL=PAGE_TTL)}
            env["PYPICACHE_FOLLOW_METHOD"] = "off"
            one = start_pypicache(servers, "one", upstreams["pypi"], run.work / "data-one", env=env)
            many = ManySources(servers, upstreams, run.work)
            log("hot pages: one upstream against three upstreams and ten indexes")
            results["hot_pages"] = hot_pages(one, many.start("hot"), duration, rounds)
            log("cold uv installs: /simple/ against an index with two bases")
            installer = Installer(run.venvs, TOP_LEVEL)
            results["cold_installs"] = cold_installs(many, servers, installer, repeats)
    finally:
        results["meta"]["duration_s"] = time.monotonic() - started
        write_results(run.out, f"sources-{run.stamp}", results, render)
        run.tidy(args.keep, ("logs", "pypicache-src"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
