"""Files the upstream took back are never served again, and their bytes are kept aside."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from pypicache.models import Alarm
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import wait_cached
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.following import caught_up, follow_settings
from tests.support.hostile import HostileUpstream
from tests.support.privatedb import JSON, Db, blobs, pypicache_cli
from tests.support.waiting import wait_until


@pytest.fixture
def following(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    # Pages (and "no such project") go stale at once: every request asks the upstream.
    return make_index(
        upstream.simple_url,
        **follow_settings(upstream, **{"pypicache.page_ttl": "0", "pypicache.negative_ttl": "0"}),
    )


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


def page(index: RunningIndex, project: str) -> requests.Response:
    return requests.get(f"{index.simple_url}{project}/", headers={"Accept": JSON}, timeout=30)


def filenames(index: RunningIndex, project: str) -> list[str]:
    response = page(index, project)
    assert response.status_code == 200, response.text
    return sorted(f["filename"] for f in response.json()["files"])


def download(index: RunningIndex, dist: Dist) -> requests.Response:
    root = index.simple_url.removesuffix("simple/")
    return requests.get(f"{root}packages/{dist.name}/{dist.filename}", timeout=30)


def quarantined(index: RunningIndex) -> dict[str, dict[str, Any]]:
    """The quarantine area's records by filename, and which bytes lie there."""
    root = index.settings.quarantine_dir
    if not root.is_dir():
        return {}
    records = [json.loads(p.read_bytes()) for p in root.glob("*.json")]
    return {
        r["filename"]: {**r, "bytes": (root / r["sha256"]).read_bytes() if r["kept"] else None}
        for r in records
    }


def alarms(index: RunningIndex) -> list[tuple[str, str, str]]:
    db = Db(index)
    try:
        return [(a.kind, a.project, a.detail) for (a,) in db.query(select(Alarm))]
    finally:
        db.engine.dispose()


def down(upstream: FakeUpstream, project: str) -> None:
    """The upstream's pages of ``project`` fail from now on (files and changelog answer)."""
    upstream.fail_next(f"/simple/{project}/", 503, times=1_000)


def test_a_file_removed_upstream_leaves_at_once_even_with_the_upstream_down(
    following: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    kept, bad = make_wheel("lib", "1.0"), make_wheel("lib", "1.1")
    upstream.publish(kept)
    upstream.publish(bad)
    assert download(following, bad).status_code == 200  # cached: someone installed it
    assert caught_up(following, upstream)
    down(upstream, "lib")
    upstream.delete_file(bad.filename)

    assert wait_until(lambda: bad.filename in quarantined(following), timeout=15)
    record = quarantined(following)[bad.filename]
    assert record["bytes"] == bad.content, "the bytes an incident responder needs"
    assert record["project"] == "lib"
    assert "removed upstream" in record["why"]
    assert bad.sha256 not in blobs(following), "outside the servable store"
    # The upstream is down, and the stale page served in its place lacks the file.
    assert filenames(following, "lib") == [kept.filename]
    assert upstream.count(path_prefix="/simple/lib/") > 0
    assert download(following, bad).status_code == 404
    [(_, project, detail)] = [a for a in alarms(following) if a[0] == "upstream-removed"]
    assert project == "lib"
    assert bad.filename in detail

    listing = pypicache_cli(following, "quarantined")
    assert listing.returncode == 0, listing.stderr
    assert f"lib/{bad.filename}" in listing.stdout
    assert bad.sha256 in listing.stdout
    verify = pypicache_cli(following, "verify")
    assert "quarantine: 1 blobs of files removed upstream" in verify.stdout, verify.stdout


def test_a_project_removed_upstream_is_gone_not_served_stale_when_the_upstream_is_down(
    following: RunningIndex, upstream: FakeUpstream
):
    first, second = make_wheel("gone", "1.0"), make_wheel("gone", "2.0")
    upstream.publish(first)
    upstream.publish(second)
    assert download(following, first).status_code == 200
    assert caught_up(following, upstream)
    down(upstream, "gone")
    upstream.delete_project("gone")

    assert wait_until(lambda: page(following, "gone").status_code != 200, timeout=15)
    assert download(following, first).status_code in (404, 502)
    records = quarantined(following)
    assert records[first.filename]["bytes"] == first.content
    assert records[second.filename]["bytes"] is None, "never cached: named, no bytes"
    [(_, _, detail)] = [a for a in alarms(following) if a[0] == "upstream-deleted"]
    assert first.filename in detail
    assert second.filename in detail


def test_a_project_the_upstream_quarantines_serves_nothing_and_its_bytes_are_kept(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url, **{"pypicache.page_ttl": "0"})
    dist = make_wheel("worm", "1.0")
    listed = hostile.serve_dist(dist)
    hostile.json_page("worm", [listed], meta={"_last-serial": 1})
    assert download(index, dist).status_code == 200
    wait_cached(index, dist.filename)  # stored and recorded once the client had its bytes

    # A careless mirror may quarantine and still list files: none is served either way.
    hostile.json_page(
        "worm",
        [listed],
        meta={"api-version": "1.4", "_last-serial": 2},
        **{"project-status": {"status": "quarantined", "reason": "malware"}},
    )
    data = page(index, "worm").json()
    assert data["project-status"] == {"status": "quarantined", "reason": "malware"}
    assert data["files"] == []
    assert data["versions"] == []
    assert download(index, dist).status_code == 404
    record = quarantined(index)[dist.filename]
    assert record["bytes"] == dist.content
    assert "the upstream quarantined worm: malware" in record["why"]
    assert dist.sha256 not in blobs(index)


def test_another_process_stops_listing_a_withdrawn_file_without_waiting_for_its_ttl(
    make_index: IndexFactory, upstream: FakeUpstream, fresh_database_url
):
    url = fresh_database_url()
    leader = make_index(
        upstream.simple_url, name="leader", **follow_settings(upstream, **{"sqlalchemy.url": url})
    )
    other = make_index(
        upstream.simple_url,
        name="other",
        **{"sqlalchemy.url": url, "pypicache.follow_method": "off", "pypicache.page_ttl": "3600"},
    )
    kept, bad = make_wheel("lib", "1.0"), make_wheel("lib", "1.1")
    upstream.publish(kept)
    upstream.publish(bad)
    assert filenames(other, "lib") == [kept.filename, bad.filename], "in its memory for an hour"
    assert caught_up(leader, upstream)
    upstream.delete_file(bad.filename)

    assert wait_until(lambda: filenames(other, "lib") == [kept.filename], timeout=15)
    assert download(other, bad).status_code == 404


def test_a_stale_copy_of_the_page_from_before_a_removal_does_not_bring_it_back(
    following: RunningIndex, upstream: FakeUpstream
):
    kept, bad = make_wheel("cdn", "1.0"), make_wheel("cdn", "1.1")
    upstream.publish(kept)
    upstream.publish(bad)
    assert filenames(following, "cdn") == [kept.filename, bad.filename]
    assert caught_up(following, upstream)
    upstream.stale("cdn")  # the CDN keeps the page (and its serial) from before
    upstream.ignore_page_etags = True  # and sends it whole, not as a 304
    upstream.delete_file(bad.filename)
    assert wait_until(lambda: bad.filename in quarantined(following), timeout=15)

    for _ in range(3):  # page_ttl 0: each request asks the upstream, which says 1.1 is there
        assert filenames(following, "cdn") == [kept.filename]
    assert download(following, bad).status_code == 404


def test_a_stale_copy_of_a_removed_projects_page_does_not_bring_it_back(
    following: RunningIndex, upstream: FakeUpstream
):
    dist = make_wheel("vanished", "1.0")
    upstream.publish(dist)
    assert download(following, dist).status_code == 200
    assert caught_up(following, upstream)
    upstream.stale("vanished")
    upstream.delete_project("vanished")
    assert wait_until(lambda: dist.filename in quarantined(following), timeout=15)

    response = page(following, "vanished")
    assert response.status_code == 502
    assert "older than the project's removal" in response.text
    assert download(following, dist).status_code in (404, 502)
