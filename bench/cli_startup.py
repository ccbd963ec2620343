"""``pypicache --help``: how long it takes and how much memory, at two commits.

``python bench/cli_startup.py [--before REF] [--after REF] [--repeats N]`` exports each
ref's package (see ``benchmark.export_pypicache``) and starts the CLI from it, the two
alternating so the machine's noise falls on both; it prints the median wall time, the
median peak RSS and whether the web stack (Pyramid) was loaded at all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchmark import export_pypicache  # noqa: E402

PROBE = (
    "import sys\n"
    "from pypicache.cli import main\n"
    "try:\n"
    "    main(['--help'])\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('pyramid' if 'pyramid' in sys.modules else 'no pyramid')\n"
)


def run_once(snapshot: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB, and whether Pyramid was imported, of one start."""
    env = {**os.environ, "PYTHONPATH": str(snapshot)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=snapshot,  # not the repository: ``-c`` puts the directory first on sys.path
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    web = process.stderr.read().decode().strip().splitlines()[-1]
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"the CLI at {snapshot} failed: {web}")
    return elapsed, usage.ru_maxrss, web


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="HEAD~1", help="git ref (default HEAD~1)")
    parser.add_argument("--after", default="HEAD", help="git ref (default HEAD)")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="pypicache-cli-startup-") as work:
        snapshots = {}
        for label, ref in (("before", args.before), ("after", args.after)):
            snapshots[label] = Path(work) / label
            commit = export_pypicache(ref, snapshots[label])
            results[label] = {"ref": ref, "commit": commit[:10], "times": [], "rss": []}
        for label in snapshots:
            run_once(snapshots[label])  # warm the page cache and the bytecode
        for _ in range(args.repeats):
            for label, snapshot in snapshots.items():
                elapsed, rss, web = run_once(snapshot)
                entry = results[label]
                entry["times"].append(elapsed)  # type: ignore[union-attr]
                entry["rss"].append(rss)  # type: ignore[union-attr]
                entry["web"] = web
    print(f"{'':8} {'ref':12} {'median s':>9} {'peak RSS MiB':>13}  web stack")
    for label, entry in results.items():
        seconds = statistics.median(entry["times"])  # type: ignore[arg-type]
        rss = statistics.median(entry["rss"]) / 1024  # type: ignore[arg-type]
        entry["median_seconds"], entry["median_rss_mib"] = seconds, rss
        print(f"{label:8} {entry['commit']!s:12} {seconds:9.3f} {rss:13.1f}  {entry['web']}")
    before, after = results["before"], results["after"]
    ratio = after["median_seconds"] / before["median_seconds"]  # type: ignore[operator]
    print(f"after / before: {ratio:.2f}x the time")
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
