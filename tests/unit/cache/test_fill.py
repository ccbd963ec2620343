"""Cache fills: one upstream download per blob, shared by readers and by processes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pypicache.cache.fill import Download, FillRegistry
from pypicache.errors import FillStopped, HashMismatch, StorageFull, UpstreamUnavailable
from pypicache.services import Services
from pypicache.storage.local import TempFileWriter
from tests.support.dists import make_large_wheel, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.waiting import wait_until

ServicesFactory = Callable[[], Services]


@pytest.fixture
def make_services(
    tmp_path: Path,
    fresh_database_url: Callable[[], str],
    upstream: FakeUpstream,
    services_from: Callable[[dict[str, str]], Services],
) -> Iterator[ServicesFactory]:
    """Services of one "process" each, all on one database and one store, as a deployment."""
    url = fresh_database_url()

    def build() -> Services:
        return services_from(
            {
                "pypicache.upstream_url": upstream.simple_url,
                "pypicache.data_dir": str(tmp_path / "data"),
                "sqlalchemy.url": url,
                "pypicache.upstream_timeout": "5",
                "pypicache.upstream_connect_timeout": "2",
                "pypicache.upstream_retries": "0",
                "pypicache.follow_method": "off",
            }
        )

    yield build
    upstream.release()


@pytest.fixture
def services(make_services: ServicesFactory) -> Services:
    return make_services()


def download_of(services: Services, project: str, filename: str) -> Download:
    """The download the file cache would start: the file as its page lists it."""
    facts = services.index.project_page(project).page.files[filename]
    assert facts.upstream_url is not None
    return Download("pypi", project, filename, False, facts.upstream_url, facts.sha256, facts.size)


def fills_of(services: Services) -> FillRegistry:
    """The fills of the one upstream (named as serve names it)."""
    return services.index.upstream("pypi").fills


def temp_files(services: Services) -> list[Path]:
    return list(services.settings.tmp_dir.iterdir())


def test_readers_of_one_file_share_one_download_and_it_is_recorded(
    services: Services, upstream: FakeUpstream
):
    dist = make_wheel("shared", "1.0")
    upstream.publish(dist)
    download = download_of(services, "shared", dist.filename)
    upstream.stall("/packages/")

    first = fills_of(services).get_or_start(download)
    assert first is not None
    assert upstream.wait_stalled()
    assert fills_of(services).get_or_start(download) is first, "a second reader joins the fill"
    upstream.release()

    assert b"".join(first.chunks()) == dist.content
    assert first.wait_finished() == dist.sha256
    assert wait_until(lambda: fills_of(services).get_or_start(download) is None), "stored now"
    assert upstream.count("GET", "/packages/") == 1
    [row] = services.reports.project("shared").files
    assert row.cached_at is not None, "the ledger recorded it in the file's row"
    assert temp_files(services) == []


def test_a_reader_never_gets_the_last_byte_of_bytes_that_do_not_hash_to_the_page(
    services: Services, upstream: FakeUpstream
):
    dist = make_wheel("tampered", "1.0")
    upstream.publish(dist)
    download = download_of(services, "tampered", dist.filename)
    upstream.wrong_bytes(dist.filename)  # same length, another digest

    fill = fills_of(services).get_or_start(download)
    assert fill is not None
    received = bytearray()

    def read_all() -> None:
        for chunk in fill.chunks():
            received.extend(chunk)

    with pytest.raises(HashMismatch):
        read_all()
    assert len(received) < len(dist.content), "the held-back byte never left"
    assert not services.store.exists(dist.sha256)
    assert wait_until(lambda: temp_files(services) == [])
    assert services.reports.project("tampered").files[0].cached_at is None


def test_a_download_cut_short_stores_nothing_and_the_next_request_tries_again(
    services: Services, upstream: FakeUpstream
):
    dist = make_wheel("cut", "1.0")
    upstream.publish(dist)
    download = download_of(services, "cut", dist.filename)
    upstream.truncate(dist.filename, at=len(dist.content) // 2)

    fill = fills_of(services).get_or_start(download)
    assert fill is not None
    with pytest.raises(UpstreamUnavailable):
        fill.wait_finished()
    assert not services.store.exists(dist.sha256)

    upstream.reset_faults()
    # The very next request starts anew, even before the failed fill's thread has ended.
    assert fills_of(services).get_or_start(download) is not fill
    assert wait_until(lambda: services.store.exists(dist.sha256))
    assert upstream.count("GET", "/packages/") == 2


def test_another_process_waits_for_the_claim_then_serves_the_stored_blob(
    make_services: ServicesFactory, upstream: FakeUpstream
):
    one, other = make_services(), make_services()
    dist = make_wheel("fleet", "1.0")
    upstream.publish(dist)
    download = download_of(one, "fleet", dist.filename)
    upstream.stall("/packages/")

    first = fills_of(one).get_or_start(download)
    assert first is not None
    assert upstream.wait_stalled()
    waiting = fills_of(other).get_or_start(download)
    assert waiting is not None, "not stored yet: the other process waits for the claim"
    upstream.release()

    assert first.wait_finished() == dist.sha256
    assert waiting.wait_finished() == dist.sha256
    assert b"".join(waiting.chunks()) == dist.content
    assert upstream.count("GET", "/packages/") == 1, "one upstream download for the deployment"


def test_stopping_aborts_a_running_download_and_refuses_new_ones(
    services: Services, upstream: FakeUpstream
):
    dist = make_large_wheel("slow", "1.0", 4 * 1024 * 1024)
    upstream.publish(dist)
    download = download_of(services, "slow", dist.filename)
    upstream.throttle_bytes_per_second = 256 * 1024

    fill = fills_of(services).get_or_start(download)
    assert fill is not None
    assert fill.wait_started() == len(dist.content)
    stopper = threading.Thread(target=fills_of(services).stop)
    stopper.start()
    stopper.join(15)
    assert not stopper.is_alive(), "stop() waits only for downloads that end"

    with pytest.raises(FillStopped):
        fill.wait_finished()
    with pytest.raises(FillStopped):
        fills_of(services).get_or_start(download)
    assert not services.store.exists(dist.sha256)
    assert temp_files(services) == []


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A store whose flush to the disk waits until the event is set (a slow disk)."""
    flushed = threading.Event()
    seal = TempFileWriter.seal

    def slow_seal(self: TempFileWriter, digest: str) -> None:
        assert flushed.wait(30), "the test never let the disk flush"
        seal(self, digest)

    monkeypatch.setattr(TempFileWriter, "seal", slow_seal)
    yield flushed
    flushed.set()


def test_readers_get_every_byte_once_it_hashed_right_before_it_is_stored(
    services: Services, upstream: FakeUpstream, slow_disk: threading.Event
):
    dist = make_wheel("prompt", "1.0")
    upstream.publish(dist)
    file = download_of(services, "prompt", dist.filename)
    metadata = replace(
        file, metadata=True, url=file.url + ".metadata", sha256=dist.metadata_sha256, size=None
    )

    fill = fills_of(services).get_or_start(file)
    meta_fill = fills_of(services).get_or_start(metadata)
    assert fill is not None
    assert meta_fill is not None
    assert b"".join(fill.chunks()) == dist.content, "while the disk has not flushed it"
    assert meta_fill.wait_verified() == len(dist.metadata)
    assert b"".join(meta_fill.chunks()) == dist.metadata
    assert not services.store.exists(dist.sha256), "not stored before it is on the disk"

    slow_disk.set()
    assert fill.wait_finished() == dist.sha256
    assert meta_fill.wait_finished() == dist.metadata_sha256
    assert services.store.exists(dist.sha256)
    assert wait_until(lambda: services.reports.project("prompt").files[0].cached_at is not None)


def test_a_file_that_cannot_be_stored_after_it_hashed_right_is_fetched_again(
    services: Services, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
):
    dist = make_wheel("unstored", "1.0")
    upstream.publish(dist)
    download = download_of(services, "unstored", dist.filename)

    reading = threading.Event()

    def full_disk(self: TempFileWriter, digest: str) -> None:
        assert reading.wait(30), "the reader never started"
        self.abort()
        raise StorageFull("blob store full: no space left on device")

    monkeypatch.setattr(TempFileWriter, "seal", full_disk)
    fill = fills_of(services).get_or_start(download)
    assert fill is not None
    chunks = fill.chunks()
    first = next(chunks)  # the reader has the file open before the disk fills
    reading.set()
    assert first + b"".join(chunks) == dist.content, "what hashed right reaches the reader"
    with pytest.raises(StorageFull):
        fill.wait_finished()
    assert not services.store.exists(dist.sha256)
    assert wait_until(lambda: temp_files(services) == [])

    monkeypatch.undo()
    assert wait_until(lambda: fills_of(services).get_or_start(download) is not fill)
    assert wait_until(lambda: services.store.exists(dist.sha256))
    assert upstream.count("GET", "/packages/") == 2
