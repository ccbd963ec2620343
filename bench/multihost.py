"""Multi-host benchmark: pypicache processes on one PostgreSQL database and one blob store.

    .venv/bin/python bench/multihost.py [--quick] [--out DIR] [--keep] [--ref GIT_REF]
        [--postgresql-url URL] [--storage auto|dir|s3|all]

1. Hot pages: wrk against one process, then against two processes at once (half the
   connections each, requests/s summed), on the same warm project page, HTML and JSON.
2. Cold installs: on a fresh database and a fresh store, two clients install the same
   tree at the same moment, one through each process; the fake upstream's request log
   says how often each file and page was fetched (target: no file twice).

It starts its own PostgreSQL cluster (or uses ``--postgresql-url``), the fake upstream
with the benchmark's real wheels, SeaweedFS for the S3 variant, and stops them all at the
end, also on Ctrl-C or SIGTERM.  Only wrk is needed besides the venv (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` and `tests.support` import from the repository

import requests  # noqa: E402

from bench.backing import (  # noqa: E402
    BackingError,
    Databases,
    PostgresCluster,
    Seaweed,
    s3_environ,
)
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
    check_same_pages,
    ensure_wheels,
    log,
    measure_ref,
    pypicache_meta,
    raise_on_sigterm,
    run_as_server,
    run_meta,
    server_env,
    start_pypicache,
    start_upstream,
    write_results,
)
from bench.installs import Install, Installer, Tool  # noqa: E402
from bench.loadgen import WrkResult, run_wrk, wrk_path  # noqa: E402
from bench.procs import CpuAccount, Server, Servers  # noqa: E402
from bench.static_index import HTML_ACCEPT, UV_ACCEPT  # noqa: E402

HTTP_TIMEOUT = 30.0
# Total wrk connections per cell; the two-process cells split them evenly.
CONNECTIONS = (2, 8)
FORMATS = {"html": HTML_ACCEPT, "json": UV_ACCEPT}
S3_PREFIX = "blobs"


# -- processes -------------------------------------------------------------------------------


@dataclass
class Store:
    """The blob store a deployment shares: one directory, or a bucket on SeaweedFS."""

    kind: str  # "dir" or "s3"
    root: Path  # the shared data dir ("dir"), or the parent of each host's own data dir
    env: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None

    def data_dir(self, host: str) -> Path:
        return self.root if self.kind == "dir" else self.root / host


def start_host(
    servers: Servers, name: str, upstream: Upstream, database_url: str, store: Store
) -> Server:
    """One ``pypicache serve`` as a host of the deployment would run it; follower off."""
    data_dir = store.data_dir(name)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in server_env(repo_on_path=False).items()
        if not key.startswith(("PYPICACHE_", "AWS_"))
    }
    env.update(
        PYPICACHE_DATABASE_URL=database_url,
        PYPICACHE_PAGE_TTL=PAGE_TTL,
        PYPICACHE_FOLLOW_METHOD="off",  # its changelog calls would only add to the log
        **store.env,
    )
    return start_pypicache(
        servers, name, upstream, data_dir, fresh=False, env=env, stop_signal=signal.SIGTERM
    )


class Deployment:
    """A fresh database and a fresh store, and the pypicache hosts on them; all removed by close.

    ``with closing(Deployment(...)) as dep:`` removes them when the block ends.
    """

    def __init__(
        self,
        servers: Servers,
        upstream: Upstream,
        databases: Databases,
        seaweed: Seaweed | None,
        root: Path,
        kind: str,
        label: str,
    ) -> None:
        self.servers = servers
        self.upstream = upstream
        self.databases = databases
        self.seaweed = seaweed
        self.database_url = databases.create(label)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        if kind == "s3":
            assert seaweed is not None
            bucket = seaweed.new_bucket()
            env = s3_environ(seaweed.endpoint_url, bucket, S3_PREFIX)
            self.store = Store("s3", root, env, bucket)
        else:
            self.store = Store("dir", root)
        self.hosts: list[Server] = []

    def start(self, *names: str) -> list[Server]:
        for name in names:
            self.hosts.append(
                start_host(self.servers, name, self.upstream, self.database_url, self.store)
            )
        return self.hosts

    def close(self) -> None:
        for host in self.hosts:
            self.servers.stop(host)
        self.hosts.clear()
        try:
            self.databases.drop(self.database_url)
        finally:
            if self.store.bucket is not None and self.seaweed is not None:
                self.seaweed.remove_bucket(self.store.bucket)
            shutil.rmtree(self.store.root, ignore_errors=True)


def s3_supported() -> str | None:
    """None when the pypicache the hosts import takes s3:// storage; else why not."""
    probe = (
        "from pypicache.settings import DEFAULTS\n"
        "import pypicache.storage.s3, boto3\n"
        "assert 'pypicache.storage' in DEFAULTS, 'no pypicache.storage setting'\n"
    )
    try:
        done = run_as_server(probe)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


# -- 1. hot pages ----------------------------------------------------------------------------


def _wrk_at_once(urls: Sequence[str], connections: int, duration: float, accept: str) -> list[Any]:
    """wrk against every URL at the same moment, ``connections`` each."""
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        futures = [
            pool.submit(
                run_wrk,
                url,
                connections=connections,
                duration_s=duration,
                headers={"Accept": accept},
            )
            for url in urls
        ]
        return [f.result() for f in futures]


def _combine(results: Sequence[WrkResult]) -> dict[str, Any]:
    """One cell from simultaneous wrk runs: requests/s summed.

    Percentiles of separate runs cannot be merged exactly: p50 is the request-weighted
    mean of the runs' p50s, p99 the worst run's p99 (an upper bound of the merged one).
    """
    total = sum(r.requests for r in results) or 1
    for r in results:
        if r.errors:
            raise RuntimeError(f"wrk saw {r.errors} errors")
    return {
        "requests_per_s": sum(r.requests_per_s for r in results),
        "p50_ms": sum(r.p50_ms * r.requests for r in results) / total,
        "p99_ms": max(r.p99_ms for r in results),
        "per_process": [r.as_dict() for r in results],
    }


def _median_cells(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "runs": runs,
    }


def measure_hot_pages(
    hosts: Sequence[Server], duration: float, rounds: int, cpu: CpuAccount
) -> dict[str, Any]:
    """One process (the first host; the second idles) versus both, same total connections.

    The cases alternate within each round so drift on the machine hits both; medians.
    """
    first, second = hosts
    for host in hosts:  # fill both processes' page caches, and check they agree
        for accept in FORMATS.values():
            requests.get(
                f"{host.url}/simple/{PAGE_PROJECT}/", headers={"Accept": accept}, timeout=60
            ).raise_for_status()
    check_same_pages({first.name: first.url, second.name: second.url}, PAGE_PROJECT)
    path = f"/simple/{PAGE_PROJECT}/"
    cpu.phase()
    results: dict[str, Any] = {"project": PAGE_PROJECT, "duration_s": duration, "rounds": rounds}
    for fmt, accept in FORMATS.items():
        for host in hosts:  # warm-up
            run_wrk(host.url + path, connections=4, duration_s=1, headers={"Accept": accept})
        samples: dict[int, dict[str, list[dict[str, Any]]]] = {
            c: {"one": [], "two": []} for c in CONNECTIONS
        }
        for _ in range(rounds):
            for connections in CONNECTIONS:
                one = _wrk_at_once([first.url + path], connections, duration, accept)
                samples[connections]["one"].append(_combine(one))
                two = _wrk_at_once(
                    [h.url + path for h in hosts], connections // len(hosts), duration, accept
                )
                samples[connections]["two"].append(_combine(two))
        results[fmt] = {}
        for connections, cases in samples.items():
            cell = {case: _median_cells(runs) for case, runs in cases.items()}
            cell["ratio"] = cell["two"]["requests_per_s"] / cell["one"]["requests_per_s"]
            results[fmt][f"c{connections}"] = cell
            log(
                f"  {fmt} c{connections}: one {cell['one']['requests_per_s']:.0f} req/s,"
                f" two {cell['two']['requests_per_s']:.0f} req/s (x{cell['ratio']:.2f})"
            )
    results["machine"] = cpu.phase()
    return results


# -- 2. cold installs ------------------------------------------------------------------------


def host_counters(host: Server) -> dict[str, dict[str, float]] | None:
    """From the host's /metrics: cache misses and upstream requests by kind; None if unreadable.

    Together with the upstream's log they show which process fetched and which one waited.
    """
    try:
        response = requests.get(host.url + "/metrics", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
    except requests.RequestException:
        return None
    counters: dict[str, dict[str, float]] = {"misses": {}, "upstream_requests": {}}
    for line in response.text.splitlines():
        match = re.fullmatch(r"(pypicache_\w+)_total\{([^}]*)\} (\S+)", line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if match[1] == "pypicache_cache_lookups" and labels.get("result") == "miss":
            counters["misses"][labels.get("kind", "?")] = float(match[3])
        elif match[1] == "pypicache_upstream_requests":
            counters["upstream_requests"][labels.get("kind", "?")] = float(match[3])
    return counters


def count_fetches(entries: list[tuple[str, str]]) -> dict[str, Any]:
    """Per-path GET counts from the upstream's log: files, metadata files, pages."""
    files: Counter[str] = Counter()
    metadata: Counter[str] = Counter()
    pages: Counter[str] = Counter()
    other: list[str] = []
    for method, raw in entries:
        path = raw.split("?", 1)[0]
        if method != "GET":
            other.append(f"{method} {path}")
        elif path.startswith("/packages/") and path.endswith(".metadata"):
            metadata[path] += 1
        elif path.startswith("/packages/"):
            files[path] += 1
        elif path.startswith("/simple/"):
            pages[path] += 1
        else:
            other.append(f"{method} {path}")

    def stats(counts: Counter[str]) -> dict[str, Any]:
        return {
            "total": sum(counts.values()),
            "unique": len(counts),
            "max_per_path": max(counts.values(), default=0),
            "repeated": {path: n for path, n in counts.items() if n > 1},
        }

    return {
        "files": stats(files),
        "metadata": stats(metadata),
        "pages": stats(pages),
        "other": other[:20],
    }


def cold_pair(
    dep: Deployment, installer: Installer, tools: tuple[Tool, Tool], expected: int
) -> dict[str, Any]:
    """Both installs started together, tools[i] through host i; the upstream log after."""
    hosts = dep.start("host-a", "host-b")
    dep.upstream.clear()
    prepared = [
        installer.prepare(f"{tool}-{host.name}") for tool, host in zip(tools, hosts, strict=True)
    ]
    started = time.monotonic()
    processes = [
        installer.start(tool, python, scratch, host.url + "/simple/")
        for tool, host, (python, scratch) in zip(tools, hosts, prepared, strict=True)
    ]
    installs: list[Install] = []
    try:
        # One waiting thread per client: finish() reads the clock when its client is done,
        # so a fast uv is not timed until the slow pip beside it ends.
        with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
            futures = [
                pool.submit(installer.finish, tool, process, python, started)
                for tool, process, (python, _) in zip(tools, processes, prepared, strict=True)
            ]
            installs = [f.result() for f in futures]
    finally:
        installer.discard(processes, prepared)
    wall = time.monotonic() - started
    fetches = count_fetches(dep.upstream.log())
    counters = {host.name: host_counters(host) for host in hosts}
    known = [c for c in counters.values() if c is not None]
    result: dict[str, Any] = {
        "storage": dep.store.kind,
        "clients": [f"{tool} via {host.name}" for tool, host in zip(tools, hosts, strict=True)],
        "label": " + ".join(
            f"{tool}@{host.name.removeprefix('host-').upper()}"
            for tool, host in zip(tools, hosts, strict=True)
        ),
        "wall_s": wall,
        "installs": [i.as_dict() for i in installs],
        "all_ok": all(i.ok and i.installed == expected for i in installs),
        # A file miss a process did not fetch itself was a wait on the other's claim.
        "host_counters": counters,
        "waited_files": (
            int(
                sum(
                    c["misses"].get("file", 0.0) - c["upstream_requests"].get("file", 0.0)
                    for c in known
                )
            )
            if len(known) == len(counters)
            else None
        ),
        "stored_objects": (
            dep.seaweed.objects(dep.store.bucket)
            if dep.seaweed is not None and dep.store.bucket is not None
            else sum(1 for p in (dep.store.root / "blobs").rglob("*") if p.is_file())
        ),
        **fetches,
    }
    for install in installs:
        if not (install.ok and install.installed == expected):
            log(f"  {install.tool} FAILED ({install.installed} installed): {install.error[-500:]}")
    log(
        f"  {dep.store.kind} {' + '.join(result['clients'])}: {wall:.1f} s;"
        f" files {fetches['files']['total']} fetches of {fetches['files']['unique']}"
        f" (max {fetches['files']['max_per_path']} per file),"
        f" metadata {fetches['metadata']['total']}/{fetches['metadata']['unique']},"
        f" pages {fetches['pages']['total']}/{fetches['pages']['unique']}"
        f" (max {fetches['pages']['max_per_path']} per project)"
    )
    return result


# -- report ----------------------------------------------------------------------------------


def render_table(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    lines = [
        f"pypicache multi-host benchmark, {meta.get('started', '?')}"
        f" ({meta.get('cpus', '?')} CPUs, PostgreSQL {meta.get('postgresql', '?')},"
        f" {PYPICACHE_THREADS} threads per process)",
        f"measured: {meta.get('pypicache', {}).get('measured', '?')}"
        f" (HEAD {meta.get('git', {}).get('commit', '?')},"
        f" pypicache dirty: {meta.get('git', {}).get('pypicache_dirty', '?')})",
        "",
    ]
    hot = results.get("hot_pages")
    if hot:
        lines += [
            f"1. Hot /simple/{hot['project']}/ (wrk {hot['duration_s']:.0f} s,"
            f" median of {hot['rounds']}; two processes: half the connections each, req/s summed,"
            " p50 request-weighted, p99 the worse one)",
            f"   {'format':6} {'conns':>5}  {'one process':>28}  {'two processes':>28}  ratio",
            f"   {'':6} {'':>5}  {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
            f"  {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}",
        ]
        for fmt in FORMATS:
            for key, cell in hot.get(fmt, {}).items():
                one, two = cell["one"], cell["two"]
                lines.append(
                    f"   {fmt:6} {key:>5}  {one['requests_per_s']:>10.0f} {one['p50_ms']:>8.2f}"
                    f" {one['p99_ms']:>8.2f}  {two['requests_per_s']:>10.0f}"
                    f" {two['p50_ms']:>8.2f} {two['p99_ms']:>8.2f}  x{cell['ratio']:.2f}"
                )
        machine = hot.get("machine", {})
        if machine:
            lines.append(
                f"   wrk shares the machine's {meta.get('cpus', '?')} CPUs with the processes;"
                f" other processes used {machine['other_share']:.0%} of the CPU meanwhile"
            )
        lines.append("")
    cold = results.get("cold_installs")
    if cold is not None:
        lines += [
            "2. Cold installs, two processes on a fresh database and store, both clients at once;"
            " upstream GETs total/unique and max per path;",
            "   'waited': file misses a process served by waiting for the other's download"
            " (hosts' /metrics)",
            f"   {'storage':7} {'clients':13} {'ok':3} {'seconds':>11}  {'files':>9} {'max':>3}"
            f" {'waited':>6}  {'metadata':>9} {'max':>3}  {'pages':>7} {'max':>3}",
        ]
        for run in cold:
            clients = run.get("label", " + ".join(run["clients"]))
            if "error" in run:
                lines.append(f"   {run['storage']:7} {clients:13} error: {run['error'][:200]}")
                continue
            files, md, pages = run["files"], run["metadata"], run["pages"]
            seconds = "/".join(f"{i['seconds']:.1f}" for i in run["installs"])
            waited = run.get("waited_files")
            lines.append(
                f"   {run['storage']:7} {clients:13} {'yes' if run['all_ok'] else 'NO':3}"
                f" {seconds:>11}  {files['total']:>4}/{files['unique']:<4}"
                f" {files['max_per_path']:>3}"
                f" {'?' if waited is None else waited:>6}"
                f"  {md['total']:>4}/{md['unique']:<4} {md['max_per_path']:>3}"
                f"  {pages['total']:>3}/{pages['unique']:<3} {pages['max_per_path']:>3}"
            )
        for note in results.get("skipped", []):
            lines.append(f"   skipped: {note}")
        measured = [run for run in cold if "error" not in run]
        if measured:
            worst = max(run["files"]["max_per_path"] for run in measured)
            verdict = "met" if worst <= 1 else "MISSED"
            lines.append(
                f"   target 'no file fetched twice': {verdict} (max {worst} fetches of one file)"
            )
            twice = [run for run in measured if run["pages"]["repeated"]]
            for run in twice:
                names = sorted(
                    p.removeprefix("/simple/").strip("/") for p in run["pages"]["repeated"]
                )
                lines.append(
                    f"   {run['storage']} {run.get('label')}: {len(names)} of"
                    f" {run['pages']['unique']} pages fetched twice or more"
                    f" (e.g. {', '.join(names[:4])})"
                )
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = base_parser(
        "python bench/multihost.py",
        __doc__.split("\n\n")[0],
        "3 rounds of 2 s load runs (else 5 of 5 s), 2 cold pairs (else 3)",
    )
    parser.add_argument(
        "--postgresql-url",
        metavar="URL",
        help="an existing server's maintenance database (CREATE DATABASE rights) instead of"
        " a private cluster, e.g. postgresql://user@127.0.0.1:5432/postgres",
    )
    parser.add_argument(
        "--storage",
        choices=("auto", "dir", "s3", "all"),
        default="auto",
        help="blob stores for the cold installs: auto = the shared directory, plus S3 when"
        " the measured pypicache supports it",
    )
    return parser.parse_args(argv)


@contextmanager
def postgresql(url: str | None) -> Iterator[str]:
    """The admin URL of ``url``'s server, or of a private cluster stopped on exit."""
    if url:
        yield url
        return
    with PostgresCluster() as cluster:
        yield cluster.admin_url


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT (a background
    # job), and the servers must not inherit that ignoring.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bypass_proxy_for_loopback()
    if wrk_path() is None:
        print("missing: wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    duration = 2.0 if args.quick else 5.0
    rounds = 3 if args.quick else 5
    pairs: list[tuple[Tool, Tool]] = (
        [("pip", "uv"), ("uv", "uv")]
        if args.quick
        else [("pip", "uv"), ("uv", "uv"), ("pip", "pip")]
    )
    started = time.monotonic()
    run = RunDirs.make(args.out, "multihost-work-")
    stamp, out, work, venvs = run.stamp, run.out, run.work, run.venvs

    measured = measure_ref(args.ref, work / "pypicache-src", migrations=True)
    stores = ["dir"]
    skipped: list[str] = []
    if args.storage in ("s3", "all", "auto"):
        why = s3_supported()
        if why is None:
            stores = ["s3"] if args.storage == "s3" else ["dir", "s3"]
        elif args.storage == "auto":
            skipped.append(f"s3: the measured pypicache has no S3 storage ({why})")
        else:
            print(f"S3 storage unavailable: {why}", file=sys.stderr)
            return 2
    wheels = ensure_wheels(WHEEL_CACHE)
    expected = len(list(wheels.glob("*.whl")))
    results: dict[str, Any] = {
        "meta": {
            **run_meta(stamp, args.quick),
            "tree": f"{len(TOP_LEVEL)} top-level projects, {expected} wheels",
            "pypicache": pypicache_meta(measured),
            "postgresql_server": "--postgresql-url" if args.postgresql_url else "private",
            "stores": stores,
            "work_dir": str(work),
        },
        "skipped": skipped,
    }
    cpu = CpuAccount()
    log(f"results and logs under {out}")
    try:
        with postgresql(args.postgresql_url) as admin_url, Servers(work / "logs") as servers:
            databases = Databases(admin_url)
            seaweed: Seaweed | None = None
            try:
                results["meta"]["postgresql"] = databases.check()
                log(f"PostgreSQL {results['meta']['postgresql']}; starting the fake upstream")
                # The real wheels only: no bulk list, no large file (not measured here).
                upstream = start_upstream(servers, wheels, bulk=0, large_bytes=0, throttle=None)
                if "s3" in stores:
                    log("starting SeaweedFS (S3)")
                    seaweed = Seaweed(servers, work / "seaweedfs")

                log("1. hot pages: one process, then two, on one database and shared store")
                with closing(
                    Deployment(
                        servers, upstream, databases, seaweed, work / "store-hot", "dir", "hot"
                    )
                ) as dep:
                    hosts = dep.start("host-a", "host-b")
                    results["hot_pages"] = measure_hot_pages(hosts, duration, rounds, cpu)

                log("2. cold installs: two clients at once, one through each process")
                installer = Installer(venvs, TOP_LEVEL)
                cold: list[dict[str, Any]] = []
                results["cold_installs"] = cold
                for kind in stores:
                    for serial, pair in enumerate(pairs):
                        try:
                            with closing(
                                Deployment(
                                    servers,
                                    upstream,
                                    databases,
                                    seaweed,
                                    work / f"store-cold-{kind}-{serial}",
                                    kind,
                                    f"cold{serial}",
                                )
                            ) as dep:
                                cold.append(cold_pair(dep, installer, pair, expected))
                        except (BackingError, RuntimeError, OSError) as exc:
                            log(f"  {kind} {pair}: failed: {exc}")
                            cold.append({"storage": kind, "clients": list(pair), "error": str(exc)})
                results["machine"] = cpu.phase()
                upstream.close()
            finally:
                if seaweed is not None:
                    seaweed.stop()
                databases.drop_all()
    finally:
        results["meta"]["duration_s"] = time.monotonic() - started
        write_results(out, f"multihost-{stamp}", results, render_table)
        run.tidy(args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
