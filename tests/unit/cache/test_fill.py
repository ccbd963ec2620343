"""Cache fills: one upstream download per blob, shared by readers and by processes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pypicache.cache.fill import Download, FillRegistry
from pypicache.errors import FillStopped, HashMismatch, UpstreamUnavailable
from pypicache.services import Services
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
