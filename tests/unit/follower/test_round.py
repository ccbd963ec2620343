"""One round of the changelog follower, run directly: what it fetches, stores and promises.

The functional tier watches the follower's thread through HTTP; here each test runs
``Follower.run_once`` itself on the real object graph (``build_services``), against
the fake upstream and a real database, so every assertion is about one known round.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pypicache.errors import ProjectNotFound
from pypicache.follower.follower import Follower
from pypicache.models import Alarm, AuditEntry, DirtyProject, File, FollowerState
from pypicache.services import Services, build_services
from pypicache.settings import Settings
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.waiting import wait_until


class Processes:
    """The Services of each process of one deployment, built but with no thread started."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._running: list[Services] = []

    def start(self) -> Services:
        services = build_services(self._settings)
        self._running.append(services)
        return services

    def stop(self, services: Services) -> None:
        """A clean shutdown: the follower hands its lease over."""
        self._running.remove(services)
        services.close()

    def stop_all(self) -> None:
        for services in reversed(self._running):
            services.close()
        self._running.clear()


@pytest.fixture
def settings(
    tmp_path: Path, upstream: FakeUpstream, fresh_database_url: Callable[[], str]
) -> Settings:
    settings = Settings.from_mapping(
        {
            "pypicache.data_dir": str(tmp_path / "data"),
            "sqlalchemy.url": fresh_database_url(),
            "pypicache.upstream_url": upstream.simple_url,
            "pypicache.changelog_url": upstream.xmlrpc_url,
            "pypicache.follow_method": "xmlrpc",
            # Only the retries of a stale page wait on it (at most 0.35 s a round).
            "pypicache.follow_interval": "0.05",
            "pypicache.changelog_min_interval": "0",
            # Pages stay fresh for an hour: whatever changes them here is the round.
            "pypicache.page_ttl": "3600",
            "pypicache.upstream_timeout": "5",
            "pypicache.upstream_connect_timeout": "2",
            "pypicache.upstream_retries": "1",
        },
        environ={},
    )
    settings.prepare_data_dir()
    return settings


@pytest.fixture
def processes(settings: Settings) -> Iterator[Processes]:
    deployment = Processes(settings)
    yield deployment
    deployment.stop_all()


@pytest.fixture
def services(processes: Processes) -> Services:
    return processes.start()


def follower_of(services: Services) -> Follower:
    assert services.followers, "the settings ask for a follower"
    return services.followers[0]


def run_round(services: Services) -> None:
    assert follower_of(services).run_once(), "the only process holds the lease"


def bootstrap(services: Services, upstream: FakeUpstream) -> int:
    """The first round: it only learns the upstream's serial, and starts following there."""
    run_round(services)
    watermark = follower_state(services).watermark
    assert watermark == upstream.serial
    return watermark


def follower_state(services: Services) -> FollowerState:
    with services.database.unit_of_work() as db:
        return db.scalars(select(FollowerState).where(FollowerState.upstream == "pypi")).one()


def dirty(services: Services) -> dict[str, DirtyProject]:
    with services.database.unit_of_work() as db:
        return {row.name: row for row in db.scalars(select(DirtyProject))}


def served(services: Services, name: str) -> dict[str, Any]:
    """The project's page as the index serves it, in PEP 691 JSON."""
    return json.loads(services.index.project_page(name).page.json.body)


def file_row(services: Services, filename: str) -> File:
    with services.database.unit_of_work() as db:
        return db.scalars(select(File).where(File.filename == filename)).one()


def cache_file(services: Services, project: str, dist: Dist) -> None:
    """Download the file the way a request does, so the blob is stored and its row cached."""
    answer = services.index.source_of(project).files.open(
        project, dist.filename, head=False, ranged=False, note=lambda _kind, _result: None
    )
    data = answer.handle.read() if answer.handle is not None else b"".join(answer.chunks or ())
    if answer.handle is not None:
        answer.handle.close()
    assert data == dist.content
    assert wait_until(lambda: file_row(services, dist.filename).cached_at is not None)


def records(services: Services, model: type[Alarm] | type[AuditEntry]) -> list[Any]:
    with services.database.unit_of_work() as db:
        return list(db.scalars(select(model)))


def test_a_change_to_a_cached_project_is_refetched_and_its_page_shows_the_new_file(
    services: Services, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("growing", "1.0"))
    assert served(services, "growing")["versions"] == ["1.0"]
    bootstrap(services, upstream)
    new = make_wheel("growing", "2.0")
    upstream.publish(new)
    upstream.clear_log()

    run_round(services)

    page = served(services, "growing")
    assert page["versions"] == ["1.0", "2.0"]
    assert new.filename in [f["filename"] for f in page["files"]]
    assert page["meta"]["_last-serial"] >= 1  # this index's serial space, not the upstream's
    assert [r.path for r in upstream.find(path_prefix="/simple/")] == ["/simple/growing/"]
    state = follower_state(services)
    assert state.watermark == state.read_serial == upstream.serial
    assert dirty(services) == {}


def test_changes_to_projects_nobody_cached_cost_no_page_request(
    services: Services, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("wanted", "1.0"))
    upstream.publish(make_wheel("unwanted-gone", "1.0"))
    served(services, "wanted")
    bootstrap(services, upstream)
    unwanted = [f"unwanted{number}" for number in range(10)]
    for name in unwanted:
        upstream.publish(make_wheel(name, "1.0"))
    upstream.delete_project("unwanted-gone")
    upstream.publish(make_wheel("wanted", "2.0"))
    upstream.clear_log()

    run_round(services)

    # The one cached project was refetched; the eleven others cost nothing at all.
    assert [r.path for r in upstream.find(path_prefix="/simple/")] == ["/simple/wanted/"]
    assert upstream.count(path_prefix="/packages/") == 0
    assert served(services, "wanted")["versions"] == ["1.0", "2.0"]
    assert services.index.upstream("pypi").index.cached_serials([*unwanted, "unwanted-gone"]) == {}
    assert dirty(services) == {}
    assert follower_state(services).watermark == upstream.serial


def test_dirty_projects_are_refetched_side_by_side_and_the_watermark_waits_for_the_slowest(
    services: Services, upstream: FakeUpstream
) -> None:
    names = ["slow", "quick0", "quick1", "quick2"]
    for name in names:
        upstream.publish(make_wheel(name, "1.0"))
        served(services, name)
    start = bootstrap(services, upstream)
    for name in names:  # "slow" has the oldest serial: its refetch is the first one started
        upstream.publish(make_wheel(name, "2.0"))
    required = upstream.project("slow").last_serial
    upstream.clear_log()
    upstream.stall("/simple/slow/")

    with ThreadPoolExecutor(1) as pool:
        round_done = pool.submit(run_round, services)
        try:
            assert upstream.wait_stalled()
            # While the first refetch hangs, the others are fetched, stored and done.
            assert wait_until(lambda: list(dirty(services)) == ["slow"])
            assert served(services, "quick2")["versions"] == ["1.0", "2.0"]
            state = follower_state(services)
            assert start <= state.watermark < required, "no promise before the work is done"
        finally:
            upstream.release()
        round_done.result(timeout=10)

    assert served(services, "slow")["versions"] == ["1.0", "2.0"]
    assert dirty(services) == {}
    assert follower_state(services).watermark == upstream.serial
    assert sorted(r.path for r in upstream.find(path_prefix="/simple/")) == sorted(
        f"/simple/{name}/" for name in names
    ), "each changed project once"


def test_a_backlog_is_read_page_by_page_and_a_short_last_page_ends_it(
    services: Services, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("watched", "1.0"))
    served(services, "watched")
    bootstrap(services, upstream)
    upstream.changelog_page_size = 2000
    upstream.add_bulk_projects(2500)  # 5,000 entries, then two more: pages of 2,000, 2,000, 1,002
    upstream.publish(make_wheel("watched", "2.0"))
    upstream.clear_log()

    run_round(services)

    # Only the first full page makes it ask where the upstream is; the short one is the end.
    assert [r.rpc_method for r in upstream.find(method="POST")] == [
        "changelog_since_serial",
        "changelog_last_serial",
        "changelog_since_serial",
        "changelog_since_serial",
    ]
    assert served(services, "watched")["versions"] == ["1.0", "2.0"]
    state = follower_state(services)
    assert state.watermark == state.read_serial == state.upstream_serial == upstream.serial


def test_changelog_calls_stay_spaced_even_when_reading_an_answer_takes_a_while(
    settings: Settings, upstream: FakeUpstream
) -> None:
    interval = 0.3
    deployment = Processes(dataclasses.replace(settings, changelog_min_interval=interval))
    try:
        services = deployment.start()
        changelog = follower_of(services).changelog
        assert changelog is not None
        since = changelog.since

        def slow_reader(serial: int) -> list[Any]:
            entries = since(serial)
            time.sleep(interval / 2)  # parsing a long answer, after the exchange is over
            return entries

        changelog.since = slow_reader  # type: ignore[method-assign]
        upstream.publish(make_wheel("paged", "1.0"))
        served(services, "paged")
        bootstrap(services, upstream)
        upstream.changelog_page_size = 1000
        upstream.add_bulk_projects(1250)  # 2,500 entries: pages of 1,000, 1,000 and 500
        upstream.clear_log()

        assert follower_of(services).run_once()

        calls = upstream.find(method="POST")
        assert len(calls) == 4
        gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(calls)]
        assert min(gaps) >= interval, "the upstream sees its calls spaced"
        assert follower_state(services).watermark == upstream.serial
    finally:
        deployment.stop_all()


def test_a_stale_page_keeps_the_project_dirty_and_the_watermark_below_its_serial(
    services: Services, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("cdn", "1.0"))
    upstream.publish(make_wheel("other", "1.0"))
    served(services, "cdn")
    served(services, "other")
    start = bootstrap(services, upstream)
    upstream.stale("cdn")  # the changelog moves on, the page does not
    upstream.publish(make_wheel("cdn", "2.0"))
    required = upstream.project("cdn").last_serial
    upstream.publish(make_wheel("other", "2.0"))  # a later change, refetched fine

    run_round(services)

    assert served(services, "other")["versions"] == ["1.0", "2.0"]
    assert served(services, "cdn")["versions"] == ["1.0"], "the old page is not stored as new"
    state = follower_state(services)
    assert state.read_serial == state.upstream_serial == upstream.serial
    assert start <= state.watermark < required, "the watermark never promises the stale page"
    (row,) = dirty(services).values()
    assert (row.name, row.required_serial, row.attempts) == ("cdn", required, 1)
    assert "older than serial" in (row.last_error or "")

    run_round(services)  # still stale: tried again, still owed

    assert dirty(services)["cdn"].attempts == 2
    assert follower_state(services).watermark < required

    upstream.stale("cdn", on=False)
    run_round(services)

    assert served(services, "cdn")["versions"] == ["1.0", "2.0"]
    assert dirty(services) == {}
    assert follower_state(services).watermark == upstream.serial


def test_a_404_the_changelog_does_not_explain_keeps_the_cached_project(
    services: Services, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("flaky", "1.0"))
    served(services, "flaky")
    bootstrap(services, upstream)
    upstream.publish(make_wheel("flaky", "2.0"))
    upstream.fail_next("/simple/flaky/", 404, times=1000)

    run_round(services)

    assert services.index.upstream("pypi").index.cached_serials(["flaky"]) != {}, (
        "a new release is no removal"
    )
    assert served(services, "flaky")["versions"] == ["1.0"]
    assert list(dirty(services)) == ["flaky"]
    assert records(services, Alarm) == []

    upstream.reset_faults()
    run_round(services)

    assert served(services, "flaky")["versions"] == ["1.0", "2.0"]
    assert dirty(services) == {}


def test_a_project_removed_upstream_is_dropped_with_its_cached_files(
    services: Services, upstream: FakeUpstream
) -> None:
    wheel = make_wheel("vanishing", "1.0")
    upstream.publish(wheel)
    served(services, "vanishing")
    cache_file(services, "vanishing", wheel)
    bootstrap(services, upstream)
    upstream.delete_project("vanishing")

    run_round(services)

    assert services.index.upstream("pypi").index.cached_serials(["vanishing"]) == {}
    with pytest.raises(ProjectNotFound):
        services.index.project_page("vanishing")
    assert not services.store.exists(wheel.sha256)
    assert [alarm.kind for alarm in records(services, Alarm)] == ["upstream-deleted"]
    assert dirty(services) == {}
    assert follower_state(services).watermark == upstream.serial


def test_a_changed_hash_invalidates_the_cached_file(
    services: Services, upstream: FakeUpstream
) -> None:
    wheel = make_wheel("swapped", "1.0")
    upstream.publish(wheel)
    served(services, "swapped")
    cache_file(services, "swapped", wheel)
    bootstrap(services, upstream)
    new = make_wheel("swapped", "1.0", extra_files={"new.txt": b"new"})
    upstream.replace_bytes(wheel.filename, new.content)

    run_round(services)

    (listed,) = served(services, "swapped")["files"]
    assert listed["hashes"] == {"sha256": new.sha256}
    row = file_row(services, wheel.filename)
    assert (row.sha256, row.cached_at) == (new.sha256, None), "the next download fetches anew"
    assert not services.store.exists(wheel.sha256), "the old bytes are never served again"
    (entry,) = [e for e in records(services, AuditEntry) if e.action == "invalidate"]
    assert (entry.old_sha256, entry.new_sha256) == (wheel.sha256, new.sha256)
    assert follower_state(services).watermark == upstream.serial


def test_only_the_lease_holder_runs_a_round_and_a_clean_stop_hands_it_over(
    processes: Processes, upstream: FakeUpstream
) -> None:
    upstream.publish(make_wheel("shared", "1.0"))
    first, second = processes.start(), processes.start()
    served(first, "shared")
    bootstrap(first, upstream)
    upstream.publish(make_wheel("shared", "2.0"))
    upstream.clear_log()

    assert not follower_of(second).run_once()

    assert upstream.requests == [], "a follower without the lease asks the upstream nothing"
    assert follower_state(second).watermark < upstream.serial

    processes.stop(first)
    run_round(second)

    assert served(second, "shared")["versions"] == ["1.0", "2.0"]
    assert follower_state(second).watermark == upstream.serial
