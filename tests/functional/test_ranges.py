"""Ranges of files not cached yet: answered from the upstream at once, the file filled once."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pypicache.errors import UpstreamUnavailable
from pypicache.upstream.client import UpstreamClient
from tests.conftest import RunningIndex
from tests.support.clients import installed, make_venv, uv_pip_install
from tests.support.dists import Dist, make_wheel, noise
from tests.support.fakeupstream import FakeUpstream, RequestRecord
from tests.support.waiting import wait_until

UV_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.01"


def file_url(index: RunningIndex, project: str, filename: str) -> str:
    return f"{index.url}/packages/{project}/{filename}"


def stored_blobs(index: RunningIndex) -> list[str]:
    return [p.name for p in index.settings.blob_dir.rglob("*") if p.is_file()]


def file_requests(upstream: FakeUpstream, wheel: Dist) -> list[RequestRecord]:
    return upstream.find(path_contains=wheel.filename)


def full_gets(upstream: FakeUpstream, wheel: Dist) -> int:
    """Upstream GETs of the whole file: the fill's (a range the upstream ignored is no fill)."""
    return sum(
        1 for r in file_requests(upstream, wheel) if r.method == "GET" and "Range" not in r.headers
    )


def upstream_requests(index: RunningIndex, kind: str) -> float:
    """pypicache_upstream_requests_total of one kind, from /metrics."""
    text = requests.get(index.url + "/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pypicache_upstream_requests_total" and sample.labels == {"kind": kind}
    )


def publish_listed(
    http: requests.Session, index: RunningIndex, upstream: FakeUpstream, wheel: Dist
) -> None:
    """Publish the file and have pypicache read its page, so the file is known, not cached."""
    upstream.publish(wheel)
    response = http.get(
        f"{index.simple_url}{wheel.name}/", headers={"Accept": UV_ACCEPT}, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["files"][0]["size"] == wheel.size


def assert_range(
    response: requests.Response,
    wheel: Dist,
    start: int,
    end: int,
    *,
    verified: bool | None = True,
) -> None:
    """A 206 of those bytes: from the store (``verified``), passed on from the upstream
    (not ``verified``), or either, as the fill's progress decides (None)."""
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{wheel.size}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["Accept-Ranges"] == "bytes"
    if verified:
        assert response.headers["ETag"] == f'"sha256:{wheel.sha256}"'
        assert "immutable" in response.headers["Cache-Control"]
    elif verified is not None:  # bytes nobody checked yet: nothing may keep or vouch for them
        assert "ETag" not in response.headers
        assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Encoding" not in response.headers
    assert response.content == wheel.content[start : end + 1]


def test_ranges_of_an_uncached_file_come_before_the_one_full_fill_ends(index, upstream, http):
    wheel = make_wheel("lazy", "1.0", extra_files={"data.bin": noise(2_000_000)})
    publish_listed(http, index, upstream, wheel)
    # The whole file takes the upstream about two seconds; a range of it a moment.
    upstream.throttle_bytes_per_second = wheel.size / 2
    url = file_url(index, "lazy", wheel.filename)
    size = wheel.size

    last = http.get(url, headers={"Range": "bytes=-4096"}, timeout=30)
    first = http.get(url, headers={"Range": "bytes=0-1023"}, timeout=30)
    middle = http.get(url, headers={"Range": "bytes=1000000-1000499"}, timeout=30)
    rest = http.get(url, headers={"Range": f"bytes={size - 100}-"}, timeout=30)
    assert stored_blobs(index) == [], "answered while the fill was still running"
    assert_range(last, wheel, size - 4096, size - 1, verified=False)
    assert_range(first, wheel, 0, 1023, verified=False)
    assert_range(middle, wheel, 1_000_000, 1_000_499, verified=False)
    assert_range(rest, wheel, size - 100, size - 1, verified=False)

    assert wait_until(lambda: stored_blobs(index) == [wheel.sha256], timeout=30)
    # Only first-last ranges go upstream: a CDN may not take a suffix one.
    ranges = [r.headers["Range"] for r in file_requests(upstream, wheel) if "Range" in r.headers]
    assert ranges == [
        f"bytes={size - 4096}-{size - 1}",
        "bytes=0-1023",
        "bytes=1000000-1000499",
        f"bytes={size - 100}-{size - 1}",
    ]
    assert full_gets(upstream, wheel) == 1
    assert upstream_requests(index, "range") == 4
    assert upstream_requests(index, "file") == 1

    upstream.clear_log()
    whole = http.get(url, timeout=30)
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == wheel.sha256
    assert_range(
        http.get(url, headers={"Range": "bytes=-10"}, timeout=30), wheel, size - 10, size - 1
    )
    assert file_requests(upstream, wheel) == [], "served from the cache"


def test_an_upstream_that_ignores_ranges_still_gives_the_client_its_range(index, upstream, http):
    wheel = make_wheel("wholeonly", "1.0", extra_files={"data.bin": noise(300_000)})
    publish_listed(http, index, upstream, wheel)
    upstream.ignore_ranges = True
    url = file_url(index, "wholeonly", wheel.filename)

    assert_range(
        http.get(url, headers={"Range": "bytes=-1000"}, timeout=30),
        wheel,
        wheel.size - 1000,
        wheel.size - 1,
    )
    assert_range(http.get(url, headers={"Range": "bytes=10-19"}, timeout=30), wheel, 10, 19)
    assert stored_blobs(index) == [wheel.sha256]
    assert full_gets(upstream, wheel) == 1


def test_a_range_the_upstream_answers_for_other_bytes_waits_for_the_verified_file(
    index, upstream, http
):
    wheel = make_wheel("grown", "1.0", extra_files={"data.bin": noise(100_000)})
    publish_listed(http, index, upstream, wheel)
    # Not the file the page describes: the range's Content-Range names another size.
    upstream.wrong_bytes(wheel.filename, wheel.content + b"tail")
    url = file_url(index, "grown", wheel.filename)

    response = http.get(url, headers={"Range": "bytes=-4"}, timeout=30)
    assert response.status_code == 502, "the fill found the file wrong, nothing was passed on"
    assert stored_blobs(index) == []

    upstream.reset_faults()
    assert_range(
        http.get(url, headers={"Range": "bytes=-4"}, timeout=30),
        wheel,
        wheel.size - 4,
        wheel.size - 1,
        verified=None,  # a new fill: the range may come before it ends, or after
    )


def test_a_head_of_an_uncached_file_downloads_nothing(index, upstream, http):
    wheel = make_wheel("probed", "1.0")
    publish_listed(http, index, upstream, wheel)
    response = http.head(file_url(index, "probed", wheel.filename), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(wheel.size)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"sha256:{wheel.sha256}"'
    assert file_requests(upstream, wheel) == []
    assert stored_blobs(index) == []


def test_a_multi_range_of_an_uncached_file_is_the_whole_file_from_the_store(index, upstream, http):
    wheel = make_wheel("several", "1.0", extra_files={"data.bin": noise(50_000)})
    publish_listed(http, index, upstream, wheel)
    response = http.get(
        file_url(index, "several", wheel.filename), headers={"Range": "bytes=0-9,20-29"}, timeout=30
    )
    assert response.status_code == 200
    assert response.content == wheel.content
    assert [r.headers.get("Range") for r in file_requests(upstream, wheel)] == [None]


def test_uv_installs_a_wheel_without_metadata_fetching_it_once(
    index: RunningIndex, upstream: FakeUpstream, http, tmp_path: Path
):
    wheel = make_wheel("nometa", "1.0", extra_files={"data.bin": noise(400_000)})
    # The page offers no .metadata: uv reads the wheel's tail by ranges to learn it.
    upstream.publish(dataclasses.replace(wheel, metadata=None))
    python = make_venv(tmp_path / "venv")
    result = uv_pip_install(python, index.simple_url, "nometa==1.0")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"nometa": "1.0"}
    assert any("Range" in r.headers for r in file_requests(upstream, wheel)), "uv used ranges"
    assert upstream.count(path_contains=wheel.filename + ".metadata") == 0
    assert wait_until(lambda: stored_blobs(index) == [wheel.sha256], timeout=30)
    assert full_gets(upstream, wheel) == 1


def test_a_range_of_most_of_an_uncached_file_waits_for_the_fill(index, upstream, http):
    wheel = make_wheel("resumed", "1.0", extra_files={"data.bin": noise(1_500_000)})
    publish_listed(http, index, upstream, wheel)
    response = http.get(
        file_url(index, "resumed", wheel.filename), headers={"Range": "bytes=100-"}, timeout=30
    )
    assert_range(response, wheel, 100, wheel.size - 1)
    # Asking the upstream for it too would be a second download beside the fill.
    assert [r.headers.get("Range") for r in file_requests(upstream, wheel)] == [None]


def test_a_file_url_upstream_answers_ranges_from_its_tree(make_index, tmp_path: Path, http):
    wheel = make_wheel("treed", "1.0", extra_files={"data.bin": noise(20_000)})
    (tmp_path / "tree" / "treed").mkdir(parents=True)
    wheel.write(tmp_path / "tree" / "treed")
    index = make_index((tmp_path / "tree").as_uri() + "/")
    assert http.get(f"{index.simple_url}treed/", timeout=30).status_code == 200
    url = file_url(index, "treed", wheel.filename)
    assert_range(
        http.get(url, headers={"Range": "bytes=-22"}, timeout=30),
        wheel,
        wheel.size - 22,
        wheel.size - 1,
        verified=None,  # a local tree's fill may be done before the range is asked
    )
    assert wait_until(lambda: stored_blobs(index) == [wheel.sha256])


@pytest.fixture
def upstream_client(upstream: FakeUpstream) -> Iterator[UpstreamClient]:
    made = UpstreamClient(upstream.simple_url, connect_timeout=2, read_timeout=5, retries=0)
    yield made
    made.close()


def test_the_client_passes_on_only_exactly_the_range_asked_for(
    upstream: FakeUpstream, upstream_client: UpstreamClient
):
    wheel = make_wheel("exact", "1.0", extra_files={"data.bin": noise(10_000)})
    upstream.publish(wheel)
    url = upstream.file_url(wheel.filename)
    stream = upstream_client.open_range(url, 100, 199, wheel.size)
    assert stream is not None
    with stream:
        assert stream.size == 100
        assert b"".join(stream.iter_chunks()) == wheel.content[100:200]
    # The upstream's file is not the size the page gives: its Content-Range says so.
    assert upstream_client.open_range(url, 100, 199, wheel.size + 1) is None
    upstream.ignore_ranges = True
    assert upstream_client.open_range(url, 100, 199, wheel.size) is None
    upstream.ignore_ranges = False
    upstream.truncate(wheel.filename, at=50)
    stream = upstream_client.open_range(url, 100, 199, wheel.size)
    assert stream is not None
    with stream, pytest.raises(UpstreamUnavailable):
        b"".join(stream.iter_chunks())
