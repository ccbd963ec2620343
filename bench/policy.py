"""The supply-chain guard on the hot path: a warm page with the rules on, against none.

    .venv/bin/python bench/policy.py [--quick] [--out DIR] [--keep] [--ref GIT_REF]

Two pypicache servers in front of one fake upstream (the benchmark's wheels and a
PyPI-shaped project of 1,500 files with real upload times): one without any policy,
one with ``pypicache.cooldown = 7d`` and 100 block rules, 99 of them naming other
projects and one blocking a version of the measured project, so that its page is
really filtered (a file left out) on every answer.  wrk asks each for the same warm
JSON page, interleaved, 8 connections.  Target: the guarded page within 10% of the
unguarded one (ratio >= 0.90).
"""

from __future__ import annotations

import os
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
from bench.loadgen import run_wrk, wrk_path  # noqa: E402
from bench.procs import Server, Servers, free_port  # noqa: E402
from bench.pypishape import project_name  # noqa: E402
from bench.static_index import UV_ACCEPT  # noqa: E402

CONNECTIONS = 8
RULES = 100
SHAPE = 1_500
TARGET = 0.90
# A rule made is applied by every process within Rules.RELOAD (2 s): the deadline for it.
RULES_APPLY_S = 30.0


def start_fake(servers: Servers, wheels: Path) -> Upstream:
    port = free_port()
    command = [
        sys.executable, "-m", "bench.upstream_server", "--port", str(port),
        "--wheels", str(wheels), "--bulk", "20", "--large-bytes", "0",
        "--shapes", str(SHAPE),
    ]  # fmt: skip
    server = servers.start(
        "upstream", command, port=port, ready_path="/_bench/info", env=server_env(), cwd=ROOT
    )
    return Upstream(server)


def _page(url: str) -> dict[str, Any]:
    response = requests.get(url, headers={"Accept": UV_ACCEPT}, timeout=120)
    response.raise_for_status()
    return response.json()


def make_rules(env: dict[str, str], data_dir: Path, project: str, version: str) -> None:
    """99 blocks of other projects' names and one of ``project==version``, by the CLI."""
    subjects = [f"bench-blocked-{n}" for n in range(RULES - 1)] + [f"{project}=={version}"]
    for subject in subjects:
        done = subprocess.run(
            [*pypicache_command(), "policy", "block", subject, "--reason", "benchmark",
             "--data-dir", str(data_dir)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"policy block {subject}: {done.stderr.strip()}")


def wait_filtered(url: str, files: int) -> None:
    """Until the guarded server applies the rules: its page leaves the blocked file out."""
    deadline = time.monotonic() + RULES_APPLY_S
    while len(_page(url)["files"]) >= files:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the block was not applied within {RULES_APPLY_S:.0f} s")
        time.sleep(0.2)


def hot_pages(
    plain: Server, guarded: Server, duration: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Requests/s of the same warm pages on both servers, interleaved."""
    results: dict[str, dict[str, Any]] = {}
    for project in (PAGE_PROJECT, project_name(SHAPE)):
        targets = {
            "no policy": f"{plain.url}/simple/{project}/",
            f"cooldown 7d + {RULES} blocks": f"{guarded.url}/simple/{project}/",
        }
        runs: dict[str, list[float]] = {label: [] for label in targets}
        for _ in range(rounds):
            for label, url in targets.items():
                result = run_wrk(
                    url,
                    connections=CONNECTIONS,
                    duration_s=duration,
                    headers={"Accept": UV_ACCEPT},
                )
                if result.errors:
                    raise RuntimeError(f"wrk saw {result.errors} errors at {url}")
                runs[label].append(result.requests_per_s)
        results[project] = {
            label: {"runs": rps, "median": statistics.median(rps)} for label, rps in runs.items()
        }
    return results


def render(results: dict[str, Any]) -> str:
    out = [f"pypicache {results['meta']['pypicache']['measured']}", ""]
    for project, cells in results.get("hot_pages", {}).items():
        files = results["meta"].get("files", {}).get(project)
        out.append(f"hot page {project} ({files} files; JSON, c{CONNECTIONS}), requests/s, median")
        base = cells["no policy"]["median"]
        for label, cell in cells.items():
            out.append(f"   {label:32} {cell['median']:8.0f}   {cell['median'] / base:5.2f}x")
        ratio = cells[f"cooldown 7d + {RULES} blocks"]["median"] / base
        verdict = "PASS" if ratio >= TARGET else "MISS"
        out.append(f"   {verdict} {ratio:.2f}x (target >= {TARGET:.2f}x)")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = base_parser("python bench/policy.py", __doc__.split("\n\n")[0], "1 round")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    bypass_proxy_for_loopback()
    if wrk_path() is None:
        print("missing: wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    run = RunDirs.make(args.out, "policy-")
    measured = measure_ref(args.ref, run.work / "pypicache-src", migrations=True)
    results: dict[str, Any] = {
        "meta": {**run_meta(run.stamp, args.quick), "pypicache": pypicache_meta(measured)}
    }
    duration, rounds = (2.0, 1) if args.quick else (3.0, 3)
    started = time.monotonic()
    try:
        with Servers(run.work / "logs") as servers:
            upstream = start_fake(servers, ensure_wheels(WHEEL_CACHE))
            env = {**server_env(repo_on_path=False, PYPICACHE_PAGE_TTL=PAGE_TTL)}
            env["PYPICACHE_FOLLOW_METHOD"] = "off"
            plain = start_pypicache(servers, "plain", upstream, run.work / "data-plain", env=env)
            guarded_dir = run.work / "data-guarded"
            guarded_env = {**env, "PYPICACHE_COOLDOWN": "7d"}
            guarded = start_pypicache(servers, "guarded", upstream, guarded_dir, env=guarded_env)
            shape = _page(f"{plain.url}/simple/{project_name(SHAPE)}/")
            files = {project_name(SHAPE): len(shape["files"])}
            files[PAGE_PROJECT] = len(_page(f"{plain.url}/simple/{PAGE_PROJECT}/")["files"])
            results["meta"]["files"] = files
            log(f"making {RULES} block rules")
            version = shape["versions"][0]
            make_rules(guarded_env, guarded_dir, project_name(SHAPE), version)
            wait_filtered(
                f"{guarded.url}/simple/{project_name(SHAPE)}/", files[project_name(SHAPE)]
            )
            log("hot pages: no policy against cooldown and blocks")
            results["hot_pages"] = hot_pages(plain, guarded, duration, rounds)
    finally:
        results["meta"]["duration_s"] = time.monotonic() - started
        write_results(run.out, f"policy-{run.stamp}", results, render)
        run.tidy(args.keep, ("logs", "pypicache-src"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
