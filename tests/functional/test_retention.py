"""Retention: the least recently used cached upstream files go when the cache is over its limit."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from pypicache.cache.claims import FillClaims
from pypicache.cache.retention import ROUND_CLAIM, Retention
from pypicache.storage.local import BlobStore
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import IndexDb, blob_path, blobs, download, pypicache
from tests.support.dists import Dist, make_large_wheel, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.uploads import form_fields, post_upload
from tests.support.waiting import wait_until

PASSWORD = "correct horse battery"


def wheel(name: str, size: int = 50_000) -> Dist:
    """A wheel of about ``size`` incompressible bytes."""
    return make_wheel(name, "1.0", extra_files={"data.bin": random.Random(name).randbytes(size)})


@pytest.fixture
def open_db() -> Iterator[Callable[[RunningIndex], IndexDb]]:
    opened: list[IndexDb] = []

    def open_(index: RunningIndex) -> IndexDb:
        opened.append(IndexDb(index))
        return opened[-1]

    yield open_
    for db in opened:
        db.close()


def upload_private(index: RunningIndex, db: IndexDb, dist: Dist) -> None:
    db.accounts.add_user("alice", PASSWORD)
    response = post_upload(
        index.url + "/legacy/", ("alice", PASSWORD), form_fields(dist), dist.filename, dist.content
    )
    assert response.status_code == 200, response.text


def upstream_downloads(upstream: FakeUpstream, dist: Dist) -> int:
    path = upstream.file(dist.filename).path
    return sum(1 for r in upstream.find(method="GET") if r.path == path)


def test_gc_evicts_the_least_recently_used_and_never_a_private_file(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    index = make_index(upstream.simple_url)
    db = open_db(index)
    oldest, middle, newest = wheel("lru-a"), wheel("lru-b"), wheel("lru-c")
    for dist in (oldest, middle, newest):
        upstream.publish(dist)
    # Bigger than the limit and the least recently used of all: still never evicted.
    private = wheel("acme-secret", 300_000)
    upload_private(index, db, private)
    for dist in (oldest, middle, newest):
        download(index, dist)
    metadata = requests.get(f"{index.url}/packages/lru-a/{oldest.filename}.metadata", timeout=10)
    assert metadata.content == oldest.metadata
    assert wait_until(lambda: oldest.metadata_sha256 in blobs(index.settings))
    stored = blobs(index.settings)
    assert {oldest.metadata_sha256, private.sha256, private.metadata_sha256} <= stored
    limit = str(middle.size + newest.size)

    dry = pypicache(index, "gc", "--dry-run", PYPICACHE_CACHE_MAX_BYTES=limit)
    assert dry.returncode == 0, dry.stderr
    assert f"would evict lru-a/{oldest.filename}" in dry.stdout
    assert "lru-b" not in dry.stdout
    assert "lru-c" not in dry.stdout
    assert "acme" not in dry.stdout
    assert "in 3 blobs" in dry.stdout
    assert "would be:" in dry.stdout
    assert "(1 to evict)" in dry.stdout
    assert blobs(index.settings) == stored
    assert all(db.cached(d.filename) for d in (oldest, middle, newest, private))

    real = pypicache(index, "gc", PYPICACHE_CACHE_MAX_BYTES=limit)
    assert real.returncode == 0, real.stderr
    assert f"evicted lru-a/{oldest.filename}" in real.stdout
    assert "now:" in real.stdout
    assert "in 2 blobs (1 evicted)" in real.stdout
    # The file and its core metadata go; everything private stays.
    assert blobs(index.settings) == stored - {oldest.sha256, oldest.metadata_sha256}
    assert not db.cached(oldest.filename)
    assert all(db.cached(d.filename) for d in (middle, newest, private))

    # Still listed; the next download refetches it through the normal fill.
    page = requests.get(f"{index.simple_url}lru-a/", timeout=10)
    assert oldest.filename in page.text
    assert upstream_downloads(upstream, oldest) == 1
    download(index, oldest)
    assert upstream_downloads(upstream, oldest) == 2
    assert db.cached(oldest.filename)
    assert oldest.sha256 in blobs(index.settings)


def test_gc_without_a_limit_evicts_nothing(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    index = make_index(upstream.simple_url)
    db = open_db(index)
    dist = wheel("kept")
    upstream.publish(dist)
    download(index, dist)
    result = pypicache(index, "gc")
    assert result.returncode == 0, result.stderr
    assert "limit none" in result.stdout
    assert "(0 evicted)" in result.stdout
    assert db.cached(dist.filename)


def test_the_background_evictor_evicts_by_last_use_and_stops_with_the_app(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    first, second, third = wheel("used-a"), wheel("used-b"), wheel("used-c")
    for dist in (first, second, third):
        upstream.publish(dist)
    # Room for any two of them, not for three.
    limit = max(first.size + second.size, first.size + third.size, second.size + third.size)
    index = make_index(
        upstream.simple_url,
        **{"pypicache.cache_max_bytes": str(limit), "pypicache.gc_interval": "0.05"},
    )
    db = open_db(index)
    assert wait_until(lambda: any(t.name == "evictor" for t in threading.enumerate()))
    download(index, first)
    download(index, second)
    download(index, first)  # served from the store: now `second` is the least recently used

    def first_used_last() -> bool:
        (_, first_used), (_, second_used) = db.row(first.filename), db.row(second.filename)
        return first_used is not None and second_used is not None and first_used > second_used

    assert wait_until(first_used_last), "the evictor records uses in batches"
    assert db.cached(second.filename)
    download(index, third)
    assert wait_until(lambda: not db.cached(second.filename))
    assert second.sha256 not in blobs(index.settings)
    assert db.cached(first.filename)
    assert db.cached(third.filename)

    index.stop()
    assert not [t for t in threading.enumerate() if t.name == "evictor"]


def test_a_blob_being_served_is_not_evicted(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    # Far more than the socket buffers hold: the download stays open while the client waits.
    held = make_large_wheel("held", "1.0", 8 * 1024 * 1024)
    other = wheel("other")
    upstream.publish(held)
    upstream.publish(other)
    # Room for both, so no fill wakes the evictor; the test lowers the limit itself below.
    index = make_index(
        upstream.simple_url,
        **{
            "pypicache.cache_max_bytes": str(held.size + other.size),
            "pypicache.gc_interval": "3600",
        },
    )
    db = open_db(index)
    download(index, held)
    download(index, other)
    evictor = index.app.services.evictor
    assert evictor is not None
    evictor.retention.limit = 1
    store = evictor.retention.store

    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow client
        client.connect(("127.0.0.1", int(index.server.port)))
        client.sendall(
            f"GET /packages/held/{held.filename} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += client.recv(4096)
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        assert store.in_use(held.sha256)  # type: ignore[attr-defined]

        result = evictor.run_once()
        assert [e.sha256 for e in result.in_use] == [held.sha256]
        assert [e.sha256 for e in result.evicted] == [other.sha256]
        assert blob_path(index.settings, held.sha256).is_file()
        assert db.cached(held.filename)

        # The slow client gets every byte, the right ones.
        while chunk := client.recv(1024 * 1024):
            body += chunk
    assert hashlib.sha256(body).hexdigest() == held.sha256

    assert wait_until(lambda: not store.in_use(held.sha256))  # type: ignore[attr-defined]
    result = evictor.run_once()
    assert [e.sha256 for e in result.evicted] == [held.sha256]
    assert not blob_path(index.settings, held.sha256).exists()
    assert not db.cached(held.filename)


def test_the_background_round_runs_in_one_process_of_the_deployment_at_a_time(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    dist = wheel("busy")
    upstream.publish(dist)
    index = make_index(
        upstream.simple_url,
        **{"pypicache.cache_max_bytes": "1", "pypicache.gc_interval": "0.05"},
    )
    db = open_db(index)
    # Another host of the deployment is in the middle of its round (between two of ours).
    elsewhere = FillClaims(db.database)
    assert wait_until(lambda: elsewhere.try_claim(ROUND_CLAIM))
    try:
        download(index, dist)
        # This process's rounds only hand over what it served; the other host evicts.
        assert wait_until(lambda: db.row(dist.filename)[1] is not None)
        assert db.cached(dist.filename)
        assert blob_path(index.settings, dist.sha256).is_file()
    finally:
        elsewhere.release(ROUND_CLAIM)
        elsewhere.stop()
    assert wait_until(lambda: not db.cached(dist.filename))
    assert not blob_path(index.settings, dist.sha256).exists()


class RefilledWhileEvicted:
    """A blob store where, the moment a blob is evicted, a download brings it back."""

    def __init__(self, store: BlobStore, refill: Callable[[], object]) -> None:
        self._store = store
        self._refill = refill

    def delete_unless_in_use(self, sha256: str) -> bool:
        deleted = self._store.delete_unless_in_use(sha256)
        self._refill()  # another process's download, committed before the eviction is
        return deleted

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_a_file_downloaded_again_while_it_is_evicted_stays_cached(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    index = make_index(upstream.simple_url)
    db = open_db(index)
    dist = wheel("refilled")
    upstream.publish(dist)
    download(index, dist)
    store = RefilledWhileEvicted(index.app.services.store, lambda: download(index, dist))
    retention = Retention(db.database, store, limit=1)  # type: ignore[arg-type]
    assert [e.sha256 for e in retention.collect().evicted] == [dist.sha256]
    assert upstream_downloads(upstream, dist) == 2
    # The refetched blob is in the store, so its row says cached: retention counts it.
    assert dist.sha256 in blobs(index.settings)
    assert db.cached(dist.filename)


def test_a_download_over_the_limit_has_the_cache_back_within_it_in_seconds_not_an_interval(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    dists = [wheel(f"prompt-{n}") for n in "abcd"]
    for dist in dists:
        upstream.publish(dist)
    # Room for any two of them, not for three.
    limit = max(a.size + b.size for a in dists for b in dists if a is not b)
    index = make_index(
        upstream.simple_url,
        **{"pypicache.cache_max_bytes": str(limit), "pypicache.gc_interval": "300"},
    )
    db = open_db(index)
    evictor = index.app.services.evictor
    assert evictor is not None
    measure = Retention(db.database, index.app.services.store, limit)
    # The round at start has measured the empty cache: what follows is the fills' doing.
    assert wait_until(lambda: evictor.retention.estimate is not None)
    first, second, third, fourth = dists
    download(index, first)
    download(index, second)
    assert measure.size().bytes <= limit

    download(index, third)  # over the limit: the oldest goes within seconds
    assert wait_until(lambda: not db.cached(first.filename), timeout=5)
    assert measure.size().bytes <= limit
    assert first.sha256 not in blobs(index.settings)
    assert all(db.cached(d.filename) for d in (second, third))

    download(index, fourth)  # and again, long before the interval ends
    assert wait_until(lambda: not db.cached(second.filename), timeout=5)
    assert measure.size().bytes <= limit
    assert blobs(index.settings) >= {third.sha256, fourth.sha256}
    assert second.sha256 not in blobs(index.settings)

    begun = time.monotonic()
    index.stop()
    assert time.monotonic() - begun < 5
    assert not [t for t in threading.enumerate() if t.name == "evictor"]


def test_a_crossing_while_another_process_runs_the_round_is_evicted_right_after_it(
    make_index: IndexFactory, upstream: FakeUpstream, open_db
):
    kept, crossing = wheel("after-a"), wheel("after-b")
    upstream.publish(kept)
    upstream.publish(crossing)
    index = make_index(
        upstream.simple_url,
        **{"pypicache.cache_max_bytes": str(crossing.size), "pypicache.gc_interval": "300"},
    )
    db = open_db(index)
    evictor = index.app.services.evictor
    assert evictor is not None
    assert wait_until(lambda: evictor.retention.estimate is not None)
    elsewhere = FillClaims(db.database)
    assert wait_until(lambda: elsewhere.try_claim(ROUND_CLAIM))
    try:
        download(index, kept)
        download(index, crossing)  # over the limit: this process's evictor wakes
        download(index, crossing)  # from the store: a use its woken round hands over

        def handed_over() -> bool:
            cached_at, used_at = db.row(crossing.filename)
            return cached_at is not None and used_at is not None and used_at > cached_at

        # So it tried, found the round taken, and left the eviction to it.
        assert wait_until(handed_over)
        assert db.cached(kept.filename)
    finally:
        elsewhere.release(ROUND_CLAIM)
        elsewhere.stop()
    assert wait_until(lambda: not db.cached(kept.filename), timeout=5)
    assert db.cached(crossing.filename)
    assert kept.sha256 not in blobs(index.settings)
