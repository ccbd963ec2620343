"""The change watcher: other processes' page changes end this one's copies; its own do not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from pypicache.cache.changes import record_change
from pypicache.cache.watcher import ChangeWatcher
from pypicache.db import Database


@pytest.fixture
def two(fresh_database_url: Callable[[], str]) -> Iterator[tuple[Database, Database]]:
    """Two processes' databases on one database: each its own engine."""
    url = fresh_database_url()
    here, there = Database.from_url(url), Database.from_url(url)
    yield here, there
    here.dispose()
    there.dispose()


def test_changes_made_elsewhere_are_forgotten_here_and_our_own_are_not(
    two: tuple[Database, Database],
):
    here, there = two
    forgotten: list[str] = []
    watcher = ChangeWatcher(here, forgotten.append)
    assert watcher.look() == 0, "the first look only finds where to start"
    with there.unit_of_work() as db:
        record_change(db, "changed-elsewhere")
    with here.unit_of_work() as db:
        record_change(db, "changed-here")
    assert watcher.look() == 2
    assert forgotten == ["changed-elsewhere"]
    assert watcher.look() == 0, "each change is seen once"


def test_a_stopped_watcher_leaves_no_thread(two: tuple[Database, Database]):
    here, there = two
    forgotten: list[str] = []
    watcher = ChangeWatcher(here, forgotten.append, interval=0.05)
    watcher.start()
    with there.unit_of_work() as db:
        record_change(db, "lib")
    watcher.stop()
    assert not [t for t in threading.enumerate() if t.name == "change-watcher"]
