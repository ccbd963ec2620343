"""/metrics after real installs, the access log, and JSON logs."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import wait_cached
from tests.support.clients import make_venv, pip_install
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import pypicache_cli
from tests.support.serveprocess import free_port, running
from tests.support.waiting import wait_until


def scrape(index: RunningIndex) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(index.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_real_installs(index: RunningIndex, upstream: FakeUpstream, tmp_path):
    upstream.publish(make_wheel("metered", "1.0", requires_dist=["helper"]))
    upstream.publish(make_wheel("helper", "1.0"))
    before = scrape(index)
    assert value(before, "pypicache_store_files") == 0

    result = pip_install(make_venv(tmp_path / "cold"), index.simple_url, "metered")
    assert result.returncode == 0, result.stderr
    cold = scrape(index)
    assert value(cold, "pypicache_cache_lookups_total", kind="page", result="miss") == 2
    assert value(cold, "pypicache_cache_lookups_total", kind="file", result="miss") == 2
    assert value(cold, "pypicache_cache_lookups_total", kind="metadata", result="miss") == 2
    assert value(cold, "pypicache_upstream_requests_total", kind="page") == 2
    assert value(cold, "pypicache_upstream_requests_total", kind="file") == 2
    assert value(cold, "pypicache_upstream_bytes_total", kind="file") > 0
    assert value(cold, "pypicache_store_files") == 2
    assert value(cold, "pypicache_store_bytes") > 0
    project_ok = value(
        cold, "pypicache_http_requests_total", route="simple_project", method="GET", status="200"
    )
    assert project_ok == 2
    assert value(cold, "pypicache_http_request_duration_seconds_count", route="file") == 2
    assert value(cold, "pypicache_http_response_bytes_total", route="file") == sum(
        upstream.file(make_wheel(n, "1.0").filename).size for n in ("metered", "helper")
    )

    result = pip_install(make_venv(tmp_path / "warm"), index.simple_url, "metered")
    assert result.returncode == 0, result.stderr
    warm = scrape(index)
    assert value(warm, "pypicache_cache_lookups_total", kind="page", result="hit") == 2
    assert value(warm, "pypicache_cache_lookups_total", kind="file", result="hit") == 2
    assert value(warm, "pypicache_upstream_requests_total", kind="file") == 2, "no refetch"

    requests.get(index.simple_url + "nonexistent/", timeout=10)
    upstream.stop()
    requests.get(index.simple_url + "gone-too/", timeout=10)
    errors = scrape(index)
    assert value(errors, "pypicache_upstream_errors_total", kind="page", reason="connection") >= 1
    assert (
        value(
            errors,
            "pypicache_http_requests_total",
            route="simple_project",
            method="GET",
            status="404",
        )
        == 1
    )


def test_follower_gauges(make_index: IndexFactory, upstream: FakeUpstream):
    upstream.publish(make_wheel("gauged", "1.0"))
    index = make_index(
        upstream.simple_url,
        **{
            "pypicache.changelog_url": upstream.xmlrpc_url,
            "pypicache.follow_method": "xmlrpc",
            "pypicache.follow_interval": "0.2",
            "pypicache.changelog_min_interval": "0",
        },
    )
    assert wait_until(
        lambda: value(scrape(index), "pypicache_follower_watermark") == upstream.serial
    )
    samples = scrape(index)
    assert value(samples, "pypicache_upstream_serial") == upstream.serial
    assert value(samples, "pypicache_follower_lag_serials") == 0
    assert value(samples, "pypicache_upstream_requests_total", kind="changelog") >= 1


def test_held_files_are_counted_by_reason_once_whatever_the_indexes_holding_them(
    make_index: IndexFactory, upstream: FakeUpstream
):
    now = datetime.now(UTC)
    cutoff = (now - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    index = make_index(
        upstream.simple_url, **{"pypicache.cooldown": "30d", "pypicache.cutoff": cutoff}
    )
    published = {
        "cooling": now - timedelta(days=20),  # before the cutoff, within the cooldown
        "newest": now - timedelta(hours=1),  # after the cutoff
        "evil": now - timedelta(days=90),  # old, and blocked below
        "mature": now - timedelta(days=60),
    }
    for name, uploaded in published.items():
        upstream.publish(make_wheel(name, "1.0"), upload_time=uploaded)
        requests.get(f"{index.simple_url}{name}/", timeout=10).raise_for_status()  # cache it
    held = "pypicache_policy_held_files"
    samples = scrape(index)
    assert value(samples, held, reason="cooldown") == 1
    assert value(samples, held, reason="cutoff") == 1
    assert (held, (("reason", "block"),)) in samples
    assert value(samples, held, reason="block") == 0

    for args in (
        ("policy", "block", "evil", "--reason", "typosquat"),
        ("index", "create", "prod", "--bases", "main", "--cooldown", "70d"),
    ):
        result = pypicache_cli(index, *args)
        assert result.returncode == 0, result.stderr

    def counted() -> tuple[float, ...]:
        samples = scrape(index)
        return tuple(value(samples, held, reason=r) for r in ("cooldown", "cutoff", "block"))

    # prod holds "mature" too, and "cooling": one file, however many indexes hold it.
    assert wait_until(lambda: counted() == (2, 1, 1), timeout=20), counted()


def test_every_request_gets_an_access_log_line(index, upstream, caplog):
    wheel = make_wheel("logged", "1.0")
    upstream.publish(wheel)
    caplog.set_level(logging.INFO, logger="pypicache.access")
    requests.get(index.simple_url + "logged/", timeout=10)
    requests.get(index.simple_url + "logged/", timeout=10)
    requests.get(f"{index.url}/packages/logged/{wheel.filename}", timeout=10)
    wait_cached(index, wheel.filename)  # stored and recorded after the client had its bytes
    requests.get(f"{index.url}/packages/logged/{wheel.filename}", timeout=10)
    assert wait_until(lambda: len([r for r in caplog.records if r.name == "pypicache.access"]) == 4)
    # A line is written when its response has been sent: a streamed miss's can come after
    # the next request's.
    lines = sorted(
        (r for r in caplog.records if r.name == "pypicache.access"),
        key=lambda r: (r.path, r.cache != "miss"),
    )
    assert [(r.method, r.path, r.status, r.cache) for r in lines] == [
        ("GET", f"/packages/logged/{wheel.filename}", 200, "miss"),
        ("GET", f"/packages/logged/{wheel.filename}", 200, "hit"),
        ("GET", "/simple/logged/", 200, "miss"),
        ("GET", "/simple/logged/", 200, "hit"),
    ]
    assert lines[0].bytes == lines[1].bytes == wheel.size
    assert all(r.duration_ms >= 0 for r in lines)
    assert f"GET /packages/logged/{wheel.filename} 200 {wheel.size}B" in lines[1].getMessage()


def test_json_logs(tmp_path: Path, upstream: FakeUpstream):
    upstream.publish(make_wheel("structured", "1.0"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPICACHE_")}
    env.update(PYPICACHE_LOG_FORMAT="json", PYPICACHE_UPSTREAM_URL=upstream.simple_url)
    command = [str(Path(sys.executable).parent / "pypicache"), "serve", "--port", str(port)]
    with running(command, tmp_path, env, port):
        requests.get(f"http://127.0.0.1:{port}/simple/structured/", timeout=10)
        requests.get(f"http://127.0.0.1:{port}/simple/structured/", timeout=10)
    entries = []
    for line in (tmp_path / "server.log").read_text().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    access = [e for e in entries if e["logger"] == "pypicache.access"]
    page_lines = [e for e in access if e["path"] == "/simple/structured/"]
    assert [(e["status"], e["cache"]) for e in page_lines] == [(200, "miss"), (200, "hit")]
    assert {"time", "level", "thread", "message", "bytes", "duration_ms"} <= set(page_lines[0])
