"""Cold and refreshed pages of PyPI-sized projects, through pypicache and straight from upstream.

For each generated project (bench/pypishape.py) and each repeat, on a pypicache with an
empty data dir and a page TTL of 0 (so every request revalidates):

* direct: the upstream's own time for the JSON page (after one fetch, so the fake has it
  rendered: what is timed is the network and the transfer, as with a real index);
* cold: the first request through pypicache (fetch, check, store, render);
* warm: the same page again (revalidated with a 304: unchanged upstream);
* refresh: the page after the upstream added one file (fetch, write one row, render),
  with the upstream's time for the changed page measured just before.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from typing import Any

import requests

from bench.procs import Server
from bench.static_index import UV_ACCEPT

HTTP_TIMEOUT = 120.0
HEADERS = {"Accept": UV_ACCEPT, "Accept-Encoding": "gzip"}

Timer = Callable[[str, dict[str, str]], dict[str, Any]]
FreshServer = Callable[[str], contextlib.AbstractContextManager[Server]]


def _add_file(upstream_url: str, project: str) -> None:
    response = requests.post(
        f"{upstream_url}/_bench/add-file", params={"project": project}, timeout=HTTP_TIMEOUT
    )
    response.raise_for_status()


def _ms(timing: dict[str, Any]) -> float:
    return float(timing["total_s"]) * 1e3


def one_round(
    upstream_url: str, shapes: dict[str, Any], server: Server, timed: Timer
) -> dict[str, dict[str, float]]:
    """Every shape once on ``server``: direct, cold, warm, direct again and refresh, in ms."""
    cells: dict[str, dict[str, float]] = {}
    for project in shapes:
        direct_url = f"{upstream_url}/simple/{project}/"
        ours_url = f"{server.url}/simple/{project}/"
        timed(direct_url, HEADERS)  # the fake renders and keeps the page
        direct = timed(direct_url, HEADERS)
        cold = timed(ours_url, HEADERS)
        warm = timed(ours_url, HEADERS)
        _add_file(upstream_url, project)
        timed(direct_url, HEADERS)
        direct_changed = timed(direct_url, HEADERS)
        refresh = timed(ours_url, HEADERS)
        cells[project] = {
            "direct_ms": _ms(direct),
            "cold_ms": _ms(cold),
            "warm_ms": _ms(warm),
            "direct_changed_ms": _ms(direct_changed),
            "refresh_ms": _ms(refresh),
            "direct_bytes": direct["bytes"],
            "bytes": cold["bytes"],
        }
    return cells


def measure_big_pages(
    upstream_url: str,
    shapes: dict[str, Any],
    fresh_server: FreshServer,
    timed: Timer,
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    runs = []
    for rep in range(repeats):
        with fresh_server(f"pypicache-big-{rep}") as server:
            runs.append(one_round(upstream_url, shapes, server, timed))
    medians: dict[str, dict[str, float]] = {}
    for project in shapes:
        fields = runs[0][project]
        medians[project] = {
            key: statistics.median(run[project][key] for run in runs) for key in fields
        }
        cell = medians[project]
        log(
            f"  {project}: direct {cell['direct_ms']:.0f} ms, cold {cell['cold_ms']:.0f} ms,"
            f" warm {cell['warm_ms']:.0f} ms, refresh {cell['refresh_ms']:.0f} ms"
            f" (direct {cell['direct_changed_ms']:.0f} ms)"
        )
    return {
        "repeats": repeats,
        "files": {project: info["files"] for project, info in shapes.items()},
        "medians": medians,
        "runs": runs,
    }
