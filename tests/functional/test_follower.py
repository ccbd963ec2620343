"""The changelog follower against the fake upstream: fresh pages and a trustworthy watermark."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from pypicache.auth.accounts import Accounts
from pypicache.db import Database, get_engine
from pypicache.models import Alarm, AuditEntry
from tests.conftest import IndexFactory, RunningIndex
from tests.support.clients import clean_client_env
from tests.support.dists import make_wheel
from tests.support.fakeupstream import RATE_LIMIT_FAULT, FakeUpstream
from tests.support.following import caught_up, follow_settings, status
from tests.support.serveprocess import answers, free_port
from tests.support.uploads import form_fields, post_upload
from tests.support.waiting import wait_until

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def following(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    return make_index(upstream.simple_url, **follow_settings(upstream))


def page(index: RunningIndex, name: str) -> requests.Response:
    return requests.get(f"{index.simple_url}{name}/", headers={"Accept": JSON}, timeout=10)


def versions(index: RunningIndex, name: str) -> list[str]:
    return page(index, name).json()["versions"]


@pytest.fixture
def records(following: RunningIndex) -> Iterator:
    """Read the audit log and alarms straight from the index's database."""
    engine = get_engine(following.settings.database_url)
    factory = Database(engine)

    def read(model: type) -> list:
        with factory.unit_of_work() as db:
            return list(db.scalars(select(model)))

    yield read
    engine.dispose()


def test_first_start_follows_from_the_current_serial(make_index, upstream):
    for number in range(30):
        upstream.publish(make_wheel(f"history{number}", "1.0"))
    upstream.changelog_page_size = 5
    index = make_index(upstream.simple_url, **follow_settings(upstream))
    assert caught_up(index, upstream)
    report = status(index)
    assert report["method"] == "xmlrpc"
    assert report["lag_serials"] == 0
    assert report["leader"] == report["this_process"]
    assert report["last_success_at"] is not None
    calls = [r.rpc_method for r in upstream.requests if r.rpc_method]
    assert "changelog_last_serial" in calls
    assert "changelog_since_serial" not in calls[: calls.index("changelog_last_serial") + 1]
    # It did not walk the history: at most the replay window's pages, not one per entry.
    assert upstream.count(path_prefix="/simple/") == 0


def test_a_new_release_appears_after_the_follower_ran(following, upstream):
    upstream.publish(make_wheel("growing", "1.0"))
    assert versions(following, "growing") == ["1.0"]
    before = int(page(following, "growing").headers["X-PyPI-Last-Serial"])
    assert caught_up(following, upstream)
    upstream.publish(make_wheel("growing", "2.0"))
    assert wait_until(lambda: versions(following, "growing") == ["1.0", "2.0"], 10)
    response = page(following, "growing")
    assert int(response.headers["X-PyPI-Last-Serial"]) > before  # this index's own serial
    assert caught_up(following, upstream)


def test_a_first_page_fetched_while_the_changelog_moved_on_is_refetched(following, upstream):
    """The gap between a first fetch and its store: the change it missed still arrives."""
    upstream.publish(make_wheel("racing", "1.0"))
    assert caught_up(following, upstream)
    upstream.stale("racing")  # what the first fetch will get: the page before 2.0
    upstream.stall("/simple/racing/")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(versions, following, "racing")
        assert upstream.wait_stalled()
        upstream.publish(make_wheel("racing", "2.0"))
        # The follower has read the change while the page was being fetched.
        assert wait_until(lambda: status(following)["read_serial"] == upstream.serial, 15)
        upstream.release()
        assert first.result(timeout=30) == ["1.0"]
    upstream.stale("racing", on=False)
    assert wait_until(lambda: versions(following, "racing") == ["1.0", "2.0"], 20)
    assert caught_up(following, upstream)


def test_yank_unyank_and_removed_files_follow(following, upstream, records):
    upstream.publish(make_wheel("moving", "1.0"))
    upstream.publish(make_wheel("moving", "2.0"))
    assert len(page(following, "moving").json()["files"]) == 2
    upstream.yank("moving", "2.0", reason="bad")
    assert wait_until(
        lambda: (
            [f.get("yanked") for f in page(following, "moving").json()["files"]] == [None, "bad"]
        )
    )
    upstream.unyank("moving", "2.0")
    upstream.delete_file(make_wheel("moving", "1.0").filename)
    assert wait_until(
        lambda: (
            [(f["filename"], f.get("yanked")) for f in page(following, "moving").json()["files"]]
            == [(make_wheel("moving", "2.0").filename, None)]
        )
    )
    removed = [e for e in records(AuditEntry) if e.action == "remove-file"]
    assert [(e.project, e.filename) for e in removed] == [
        ("moving", make_wheel("moving", "1.0").filename)
    ]


def test_a_replaced_file_is_invalidated_and_pip_gets_the_new_bytes(
    following, upstream, records, tmp_path
):
    wheel = make_wheel("swapped", "1.0")
    upstream.publish(wheel)
    url = f"{following.url}/packages/swapped/{wheel.filename}"
    assert requests.get(url, timeout=10).content == wheel.content
    old_blob = following.app.services.store.path(wheel.sha256)
    assert wait_until(old_blob.is_file)

    new_bytes = make_wheel("swapped", "1.0", extra_files={"new.txt": b"new"}).content
    new_sha256 = hashlib.sha256(new_bytes).hexdigest()
    upstream.replace_bytes(wheel.filename, new_bytes)
    assert wait_until(
        lambda: page(following, "swapped").json()["files"][0]["hashes"]["sha256"] == new_sha256
    )
    # The blob goes once the new page is committed, a moment after the page is served.
    assert wait_until(lambda: not old_blob.exists()), "the old bytes are never served again"

    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
         "--index-url", following.simple_url, "-d", str(tmp_path), "swapped==1.0"],
        capture_output=True, text=True, env=clean_client_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256((tmp_path / wheel.filename).read_bytes()).hexdigest() == new_sha256

    (entry,) = [e for e in records(AuditEntry) if e.action == "invalidate"]
    assert (entry.project, entry.filename) == ("swapped", wheel.filename)
    assert (entry.old_sha256, entry.new_sha256) == (wheel.sha256, new_sha256)
    assert entry.serial == upstream.project("swapped").last_serial
    (alarm,) = records(Alarm)
    assert alarm.kind == "upstream-mutation"
    assert alarm.filename == wheel.filename


def test_a_project_removed_upstream_stops_being_served(following, upstream, records):
    upstream.publish(make_wheel("vanishing", "1.0"))
    assert page(following, "vanishing").status_code == 200
    upstream.delete_project("vanishing")
    assert wait_until(lambda: page(following, "vanishing").status_code == 404)
    assert [a.kind for a in records(Alarm)] == ["upstream-deleted"]


def test_a_stale_cdn_holds_the_watermark_until_the_page_is_fresh(following, upstream):
    upstream.publish(make_wheel("cdn", "1.0"))
    assert versions(following, "cdn") == ["1.0"]
    assert caught_up(following, upstream)
    before = status(following)["watermark"]

    upstream.stale("cdn")
    upstream.publish(make_wheel("cdn", "2.0"))
    change = upstream.serial
    # The follower saw the change and retried with a cache buster; the CDN ignores it.
    assert wait_until(lambda: upstream.count(path_contains="pypicache-refresh=") >= 2)
    assert wait_until(lambda: status(following)["upstream_serial"] == change)
    report = status(following)
    assert before <= report["watermark"] < change
    assert report["dirty_projects"] == 1
    assert report["lag_serials"] > 0
    assert versions(following, "cdn") == ["1.0"], "the stale page was not stored"

    upstream.stale("cdn", on=False)
    assert caught_up(following, upstream)
    assert versions(following, "cdn") == ["1.0", "2.0"]
    assert status(following)["dirty_projects"] == 0


def test_changes_to_projects_nobody_asked_for_cost_no_upstream_request(following, upstream):
    upstream.publish(make_wheel("wanted", "1.0"))
    assert page(following, "wanted").status_code == 200
    for number in range(25):
        upstream.publish(make_wheel(f"unwanted{number}", "1.0"))
    upstream.publish(make_wheel("wanted", "2.0"))
    assert caught_up(following, upstream)
    assert versions(following, "wanted") == ["1.0", "2.0"]
    assert upstream.count(path_prefix="/simple/unwanted") == 0


def test_changelog_faults_are_survived_and_auto_falls_back_to_the_index(following, upstream):
    upstream.publish(make_wheel("robust", "1.0"))
    assert page(following, "robust").status_code == 200
    assert caught_up(following, upstream)
    upstream.xmlrpc_fault = RATE_LIMIT_FAULT
    upstream.publish(make_wheel("robust", "2.0"))
    assert wait_until(lambda: versions(following, "robust") == ["1.0", "2.0"], 15)
    assert wait_until(lambda: status(following)["method"] == "simple-index")
    assert caught_up(following, upstream)


def test_xmlrpc_only_reports_errors_and_keeps_serving(make_index, upstream):
    upstream.publish(make_wheel("steady", "1.0"))
    index = make_index(
        upstream.simple_url, **follow_settings(upstream, **{"pypicache.follow_method": "xmlrpc"})
    )
    assert caught_up(index, upstream)
    assert page(index, "steady").status_code == 200
    upstream.xmlrpc_fault = RATE_LIMIT_FAULT
    assert wait_until(lambda: "-32500" in (status(index)["last_error"] or ""))
    upstream.xmlrpc_fault = None
    upstream.fail_next("/pypi", 503, times=3)
    upstream.publish(make_wheel("steady", "2.0"))
    upstream.publish(make_wheel("fresh-one", "1.0"))
    assert page(index, "steady").status_code == 200
    assert page(index, "fresh-one").status_code == 200, "uncached pages are still filled"
    assert wait_until(lambda: versions(index, "steady") == ["1.0", "2.0"], 60)
    assert wait_until(lambda: status(index)["last_error"] is None, 30)


def test_the_simple_index_method_alone(make_index, upstream):
    upstream.publish(make_wheel("indexed", "1.0"))
    index = make_index(
        upstream.simple_url,
        **follow_settings(
            upstream,
            **{"pypicache.follow_method": "simple-index", "pypicache.changelog_url": "none"},
        ),
    )
    assert versions(index, "indexed") == ["1.0"]
    assert caught_up(index, upstream)
    upstream.publish(make_wheel("indexed", "2.0"))
    assert wait_until(lambda: versions(index, "indexed") == ["1.0", "2.0"])
    upstream.delete_project("indexed")
    assert wait_until(lambda: page(index, "indexed").status_code == 404)
    report = status(index)
    assert report["method"] == "simple-index"
    assert upstream.count(method="POST") == 0, "no XML-RPC at all"


def test_restart_in_a_backlog_loses_nothing_and_replays_harmlessly(make_index, upstream, tmp_path):
    settings = follow_settings(upstream)
    wheel = make_wheel("replayed", "1.0")
    upstream.publish(wheel)
    first = make_index(upstream.simple_url, name="first", **settings)
    assert page(first, "replayed").status_code == 200
    for number in range(6):
        upstream.publish(make_wheel(f"project{number}", "1.0"))
        assert page(first, f"project{number}").status_code == 200
    assert caught_up(first, upstream)

    # A backlog read slowly, page by page, and a restart in the middle of it.
    upstream.changelog_page_size = 2
    first.stop()
    new_bytes = make_wheel("replayed", "1.0", extra_files={"x": b"y"}).content
    upstream.replace_bytes(wheel.filename, new_bytes)
    for number in range(6):
        upstream.publish(make_wheel(f"project{number}", "2.0"))
    shared = {
        "pypicache.data_dir": str(first.settings.data_dir),
        "sqlalchemy.url": first.settings.database_url,
    }
    # The last project's refetch is held, so the second process stops with the watermark
    # behind what it read (a fast database otherwise caught up before anyone looked).
    upstream.stall("/simple/project5/")
    second = make_index(
        upstream.simple_url,
        name="second",
        **follow_settings(upstream, **{"pypicache.changelog_min_interval": "0.3"}),
        **shared,
    )
    assert wait_until(lambda: (status(second)["read_serial"] or 0) > status(second)["watermark"])
    upstream.release()
    second.stop()
    third = make_index(upstream.simple_url, name="third", **settings, **shared)
    assert caught_up(third, upstream, timeout=30)
    for number in range(6):
        assert versions(third, f"project{number}") == ["1.0", "2.0"]
    new_sha256 = hashlib.sha256(new_bytes).hexdigest()
    assert page(third, "replayed").json()["files"][0]["hashes"]["sha256"] == new_sha256

    engine = get_engine(third.settings.database_url)
    with Database(engine).unit_of_work() as db:
        invalidations = db.scalars(select(AuditEntry).where(AuditEntry.action == "invalidate"))
        assert len(list(invalidations)) == 1, "replayed entries changed nothing twice"
    engine.dispose()


def _serve(upstream: FakeUpstream, data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPICACHE_")}
    for key, value in follow_settings(upstream).items():
        env["PYPICACHE_" + key.removeprefix("pypicache.").upper()] = value
    env["PYPICACHE_UPSTREAM_URL"] = upstream.simple_url
    env["PYPICACHE_DATA_DIR"] = str(data_dir)
    log = (data_dir.parent / f"server-{port}.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "pypicache"), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return process


def test_two_processes_on_one_database_elect_one_leader(upstream, tmp_path):
    upstream.publish(make_wheel("shared", "1.0"))
    data_dir = tmp_path / "data"
    ports = [free_port(), free_port()]
    processes = [_serve(upstream, data_dir, port) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            assert wait_until(lambda url=url: answers(url + "/health"), 30)

        def leader() -> str | None:
            return requests.get(urls[1] + "/api/status", timeout=5).json()["leader"]

        assert wait_until(lambda: leader() is not None, 30)
        identities = {
            port: requests.get(url + "/api/status", timeout=5).json()["this_process"]
            for port, url in zip(ports, urls, strict=True)
        }
        current = leader()
        assert current in identities.values()
        led_by = next(i for i, port in enumerate(ports) if identities[port] == current)
        other = 1 - led_by
        assert requests.get(f"{urls[other]}/simple/shared/", timeout=10).ok, "both serve"

        processes[led_by].send_signal(signal.SIGKILL)
        processes[led_by].wait(10)
        survivor = urls[other]
        assert wait_until(
            lambda: (
                requests.get(survivor + "/api/status", timeout=5).json()["leader"]
                == identities[ports[other]]
            ),
            30,
        )
        upstream.publish(make_wheel("shared", "2.0"))
        assert wait_until(
            lambda: (
                requests.get(
                    f"{survivor}/simple/shared/", headers={"Accept": JSON}, timeout=5
                ).json()["versions"]
                == ["1.0", "2.0"]
            ),
            30,
        )
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                process.terminate()
            process.wait(15)


def test_the_follower_ignores_private_projects(following, upstream):
    engine = get_engine(following.settings.database_url)
    try:
        accounts = Accounts(Database(engine))
        accounts.add_user("owner", "long enough password")
        ours = make_wheel("our-secret", "1.0")
        response = post_upload(
            following.url + "/legacy/",
            ("owner", "long enough password"),
            form_fields(ours),
            ours.filename,
            ours.content,
        )
        assert response.status_code == 200, response.text
    finally:
        engine.dispose()
    # The upload asked once whether the upstream has the name; nothing asks after that.
    assert upstream.count(path_prefix="/simple/our-secret/") == 1
    upstream.clear_log()
    assert caught_up(following, upstream)
    upstream.publish(make_wheel("our-secret", "99.0"))  # the dependency-confusion attempt
    upstream.publish(make_wheel("our-secret", "98.0"))
    assert caught_up(following, upstream)
    assert versions(following, "our-secret") == ["1.0"]
    assert status(following)["dirty_projects"] == 0
    assert upstream.count(path_prefix="/simple/our-secret/") == 0
