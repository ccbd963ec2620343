"""An upstream answering 200 with pages that are too big or not the project's page at all."""

from __future__ import annotations

import hashlib
import resource
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from pypicache.db import Database, get_engine
from pypicache.errors import UpstreamUnavailable
from pypicache.models import Alarm
from pypicache.web.views.simple import STALE_CACHE_CONTROL
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import blob_path, download
from tests.support.dists import make_wheel
from tests.support.hostile import JSON_TYPE, Answer, HostileUpstream

MIB = 1024 * 1024


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


def gzip_bomb(inflated: int) -> Callable[[], Iterable[bytes]]:
    """A gzip stream of ``inflated`` zero bytes, compressed on the fly (about 1/1000 the size)."""

    def chunks() -> Iterator[bytes]:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = bytes(MIB)
        for _ in range(inflated // MIB):
            out = compressor.compress(block)
            if out:
                yield out
        yield compressor.flush()

    return chunks


def peak_rss() -> int:
    """This process's peak resident size in bytes (the index runs in it, on waitress)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def alarms(index: RunningIndex) -> list[tuple[str, str, str]]:
    engine = get_engine(index.settings.database_url)
    try:
        with Database(engine).unit_of_work() as db:
            rows = db.execute(select(Alarm.kind, Alarm.project, Alarm.detail).order_by(Alarm.id))
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def get_page(index: RunningIndex, name: str) -> requests.Response:
    return requests.get(f"{index.simple_url}{name}/", headers={"Accept": JSON_TYPE}, timeout=30)


def listed(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [f["filename"] for f in response.json()["files"]]


def test_a_gzip_bomb_is_cut_off_at_the_cap_and_answers_502(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url, **{"pypicache.max_page_bytes": str(MIB)})
    hostile.set(
        "/simple/bomb/",
        Answer(
            headers={"Content-Type": JSON_TYPE, "Content-Encoding": "gzip"},
            body=gzip_bomb(1024 * MIB),
        ),
    )
    before = peak_rss()
    tracemalloc.start()
    try:
        response = get_page(index, "bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 502
    assert f"larger than {MIB} bytes" in response.text
    # Inflating the whole gigabyte would have raised the peak by about that much; what
    # was allocated is bounded by the cap (the body read so far, a copy, a chunk or two).
    assert peak_rss() - before < 64 * MIB
    assert peak < 8 * MIB


def test_a_page_under_the_cap_is_inflated_and_served(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url, **{"pypicache.max_page_bytes": str(MIB)})
    entry = hostile.serve_dist(make_wheel("zipped", "1.0"))
    hostile.json_page("zipped", [entry])
    body = hostile.answers["/simple/zipped/"].body
    assert isinstance(body, bytes)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    hostile.set(
        "/simple/zipped/",
        Answer(
            headers={"Content-Type": JSON_TYPE, "Content-Encoding": "gzip"},
            body=compressor.compress(body) + compressor.flush(),
        ),
    )
    assert listed(get_page(index, "zipped")) == [entry["filename"]]


CAPTIVE_PORTAL = """<!DOCTYPE html>
<html><head><title>Welcome to Hotel Wi-Fi</title></head>
<body><h1>Please accept our terms</h1><a href="/login?next=/simple/">Log in</a></body></html>
"""


def _captive_portal(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.html_page(name, CAPTIVE_PORTAL)


def _no_files_same_serial(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.json_page(name, [], meta={"_last-serial": 7})


def _no_files_no_serial(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.json_page(name, [])


def _no_serial(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.json_page(name, [entry])


def _another_projects_page(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.json_page("something-else", [], meta={"_last-serial": 9})
    hostile.answers[f"/simple/{name}/"] = hostile.answers.pop("/simple/something-else/")


def _garbage(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.set(f"/simple/{name}/", Answer(headers={"Content-Type": JSON_TYPE}, body=b"{oops"))


def _too_big(hostile: HostileUpstream, name: str, entry: dict[str, Any]) -> None:
    hostile.set(
        f"/simple/{name}/",
        Answer(
            headers={"Content-Type": JSON_TYPE, "Content-Encoding": "gzip"},
            body=gzip_bomb(64 * MIB),
        ),
    )


@pytest.mark.parametrize(
    "answer",
    [
        _captive_portal,
        _no_files_same_serial,
        _no_files_no_serial,
        _no_serial,
        _another_projects_page,
        _garbage,
        _too_big,
    ],
)
def test_an_invalid_page_keeps_the_cached_one_served_stale_with_one_alarm(
    make_index: IndexFactory, hostile: HostileUpstream, answer: Callable[..., None]
):
    index = make_index(
        hostile.simple_url,
        **{
            "pypicache.page_ttl": "0",  # every request asks the upstream again
            "pypicache.error_retry_interval": "0",
            "pypicache.max_page_bytes": str(MIB),
        },
    )
    wheel = make_wheel("victim", "1.0")
    entry = hostile.serve_dist(wheel)
    hostile.json_page("victim", [entry], meta={"_last-serial": 7})
    good = get_page(index, "victim")
    assert listed(good) == [wheel.filename]
    served_serial = good.headers["X-PyPI-Last-Serial"]  # this index's, not the upstream's
    download(index, wheel)
    assert blob_path(index.settings, wheel.sha256).is_file()

    answer(hostile, "victim", entry)
    for _ in range(3):
        response = get_page(index, "victim")
        assert listed(response) == [wheel.filename]
        assert response.headers["Cache-Control"] == STALE_CACHE_CONTROL
        assert response.headers["X-PyPI-Last-Serial"] == served_serial
    assert hostile.count("/simple/victim/") >= 5  # each request asked again, no alarm each
    assert blob_path(index.settings, wheel.sha256).is_file()
    hostile.set(f"/files/{wheel.filename}", Answer(status=404))
    assert hashlib.sha256(download(index, wheel)).hexdigest() == wheel.sha256
    found = alarms(index)
    assert [(kind, project) for kind, project, _ in found] == [("upstream-invalid-page", "victim")]


def test_the_alarm_says_why(make_index: IndexFactory, hostile: HostileUpstream):
    index = make_index(hostile.simple_url, **{"pypicache.page_ttl": "0"})
    wheel = make_wheel("why", "1.0")
    hostile.json_page("why", [hostile.serve_dist(wheel)], meta={"_last-serial": 3})
    listed(get_page(index, "why"))
    hostile.json_page("why", [], meta={"_last-serial": 3})
    listed(get_page(index, "why"))
    [(_, _, detail)] = alarms(index)
    assert "lists no files" in detail


def test_a_valid_change_still_replaces_the_files(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url, **{"pypicache.page_ttl": "0"})
    old, new = make_wheel("moving", "1.0"), make_wheel("moving", "2.0")
    hostile.json_page("moving", [hostile.serve_dist(old)], meta={"_last-serial": 1})
    assert listed(get_page(index, "moving")) == [old.filename]
    hostile.json_page("moving", [hostile.serve_dist(new)], meta={"_last-serial": 2})
    response = get_page(index, "moving")
    assert listed(response) == [new.filename]
    assert response.headers["Cache-Control"] != STALE_CACHE_CONTROL
    # No invalid-page alarm: only the removal of the old file, which every removal raises.
    [(kind, _, detail)] = alarms(index)
    assert kind == "upstream-removed"
    assert old.filename in detail


def test_a_captive_portal_for_an_uncached_project_is_a_502_not_an_empty_project(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url)
    hostile.set("/simple/fresh/", Answer(headers={"Content-Type": "text/plain"}, body=b"hello"))
    response = get_page(index, "fresh")
    assert response.status_code == 502
    assert "not a project page" in response.text
    hostile.html_page("portal", "<html><body><h1>Please accept our terms</h1></body></html>")
    response = get_page(index, "portal")
    assert response.status_code == 502
    assert "not a page" in response.text
    assert alarms(index) == []  # nothing stored to protect: the client's 502 says it


def test_a_small_page_cache_still_serves_every_page_from_the_database(
    make_index: IndexFactory, hostile: HostileUpstream
):
    # Room for about one page: the others are evicted and read from the database again.
    index = make_index(hostile.simple_url, **{"pypicache.page_cache_bytes": "3000"})
    wheels = {f"many{n}": make_wheel(f"many{n}", "1.0") for n in range(12)}
    for name, wheel in wheels.items():
        hostile.json_page(name, [hostile.serve_dist(wheel)], meta={"_last-serial": 1})
    for _ in range(3):
        for name, wheel in wheels.items():
            assert listed(get_page(index, name)) == [wheel.filename]
    # Fresh pages are never fetched twice: an evicted one came from the database.
    assert all(hostile.count(f"/simple/{name}/") == 1 for name in wheels)


def test_a_changelog_refetch_that_gets_an_emptied_page_keeps_the_project(
    make_index: IndexFactory, hostile: HostileUpstream
):
    """The follower's path: the changelog says serial 8 changed it, the upstream says nothing."""
    index = make_index(hostile.simple_url)
    wheel = make_wheel("followed", "1.0")
    hostile.json_page("followed", [hostile.serve_dist(wheel)], meta={"_last-serial": 7})
    good = get_page(index, "followed")
    assert listed(good) == [wheel.filename]
    served_serial = good.headers["X-PyPI-Last-Serial"]
    download(index, wheel)

    hostile.json_page("followed", [], meta={"_last-serial": 8})
    with pytest.raises(UpstreamUnavailable, match="lists no files"):
        index.app.services.index.upstream("pypi").index.refresh_for_serial(
            "followed", 8, removal=False, cache_buster=None
        )
    index.app.services.index.forget("followed")
    response = get_page(index, "followed")
    assert listed(response) == [wheel.filename]
    assert response.headers["X-PyPI-Last-Serial"] == served_serial, "nothing changed here"
    assert blob_path(index.settings, wheel.sha256).is_file()
    assert [kind for kind, _, _ in alarms(index)] == ["upstream-invalid-page"]


def test_a_file_listed_twice_is_kept_once_as_first_listed(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url)
    wheel = make_wheel("twice", "1.0")
    entry = hostile.serve_dist(wheel)
    impostor = {**entry, "hashes": {"sha256": "0" * 64}, "url": hostile.url + "/files/other"}
    hostile.json_page("twice", [entry, impostor], meta={"_last-serial": 3})
    response = get_page(index, "twice")
    assert listed(response) == [wheel.filename]
    assert response.json()["files"][0]["hashes"] == {"sha256": wheel.sha256}
    assert download(index, wheel) == wheel.content
