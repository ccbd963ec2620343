"""Retention's trigger: a running count of the cached bytes, and the evictor it wakes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from pypicache.cache.claims import FillClaims
from pypicache.cache.retention import ROUND_CLAIM, Collection, Evictor, Retention, UsageLog
from pypicache.db import Database
from pypicache.storage.local import LocalBlobStore
from tests.support.waiting import wait_until

LIMIT = 100
GAP = 0.3


@pytest.fixture
def database(fresh_database_url: Callable[[], str]) -> Iterator[Database]:
    database = Database.from_url(fresh_database_url())
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "tmp").mkdir()
    return LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp")


class FillWhileMeasuring(Database):
    """A database where a fill is noted in the middle of each measurement's query."""

    def __init__(self, database: Database) -> None:
        super().__init__(database.engine)
        self.during: Callable[[], object] = lambda: None

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        with super().unit_of_work() as db:
            self.during()
            yield db


def test_the_count_starts_at_a_measurement_and_follows_the_fills(
    database: Database, store: LocalBlobStore
):
    retention = Retention(database, store, LIMIT)
    assert retention.estimate is None
    assert retention.note_stored(1), "unmeasured: a round must look"
    assert retention.size().bytes == 0
    assert retention.estimate == 0  # the fill before the measurement is its to see
    assert not retention.note_stored(60)
    assert not retention.note_stored(40)  # at the limit is within it
    assert retention.note_stored(1)
    assert retention.over_limit()
    retention.size()  # the database knows of none of these fills: it corrects the count
    assert retention.estimate == 0
    assert not retention.over_limit()


def test_a_fill_noted_while_the_cache_is_measured_is_not_lost(
    database: Database, store: LocalBlobStore
):
    measuring = FillWhileMeasuring(database)
    retention = Retention(measuring, store, LIMIT)
    measuring.during = lambda: retention.note_stored(70)
    retention.size()
    assert retention.estimate == 70  # maybe counted twice, never missed
    measuring.during = lambda: None
    assert retention.note_stored(70)


def test_without_a_limit_no_fill_wakes_anyone(database: Database, store: LocalBlobStore):
    retention = Retention(database, store, 0)
    assert not retention.note_stored(10**12)
    retention.size()
    assert not retention.note_stored(10**12)
    assert not retention.over_limit()


class CountedRounds(Retention):
    """Retention that counts its rounds and can hold one at its start."""

    def __init__(self, database: Database, store: LocalBlobStore) -> None:
        super().__init__(database, store, LIMIT)
        self.started: list[float] = []
        self.gate = threading.Event()
        self.gate.set()

    def collect(self, **kwargs: object) -> Collection:
        self.started.append(time.monotonic())
        assert self.gate.wait(10)
        return super().collect(**kwargs)  # type: ignore[arg-type]


class CountedClaims(FillClaims):
    """Claims that count how often the round was found taken."""

    refused = 0

    def try_claim(self, key: str) -> bool:
        claimed = super().try_claim(key)
        self.refused += not claimed
        return claimed


@pytest.fixture
def claims(database: Database) -> Iterator[CountedClaims]:
    claims = CountedClaims(database)
    yield claims
    claims.stop()


@pytest.fixture
def evictor(database: Database, store: LocalBlobStore, claims: CountedClaims) -> Iterator[Evictor]:
    evictor = Evictor(
        CountedRounds(database, store), UsageLog(database), 300.0, claims, wake_gap=GAP
    )
    evictor.start()
    yield evictor
    evictor.retention.gate.set()  # type: ignore[attr-defined]
    evictor.stop()


def rounds(evictor: Evictor) -> list[float]:
    return evictor.retention.started  # type: ignore[attr-defined,no-any-return]


def test_wake_ups_during_a_round_make_one_more_round_no_sooner_than_the_gap(evictor: Evictor):
    retention: CountedRounds = evictor.retention  # type: ignore[assignment]
    assert wait_until(lambda: len(rounds(evictor)) == 1 and retention.estimate is not None)
    evictor.note_stored(LIMIT // 2)  # within the limit: no round
    retention.gate.clear()
    evictor.note_stored(LIMIT)  # over it, with an interval of 300 s: a round now
    assert wait_until(lambda: len(rounds(evictor)) == 2)
    for _ in range(50):
        evictor.note_stored(LIMIT)
    retention.gate.set()
    assert wait_until(lambda: len(rounds(evictor)) == 3)
    assert retention.estimate == 0  # measured: none of those fills is in the database
    evictor.note_stored(LIMIT + 1)
    assert wait_until(lambda: len(rounds(evictor)) == 4)
    # Fifty wake-ups made one round; every round a fill woke kept its distance (less
    # the jitter of the claim and flush before each).
    assert len(rounds(evictor)) == 4
    assert all(b - a >= GAP * 0.6 for a, b in pairwise(rounds(evictor)))


def test_a_round_held_elsewhere_is_tried_again_soon_not_an_interval_later(
    evictor: Evictor, database: Database, claims: CountedClaims
):
    retention = evictor.retention
    assert wait_until(lambda: len(rounds(evictor)) == 1 and retention.estimate is not None)
    elsewhere = FillClaims(database)
    try:
        assert wait_until(lambda: elsewhere.try_claim(ROUND_CLAIM))
        evictor.note_stored(LIMIT + 1)
        assert wait_until(lambda: claims.refused >= 1)  # woken, and found the round taken
        assert len(rounds(evictor)) == 1
    finally:
        elsewhere.release(ROUND_CLAIM)
        elsewhere.stop()
    assert wait_until(lambda: len(rounds(evictor)) == 2, timeout=5)
    assert wait_until(lambda: not retention.over_limit())


def test_the_evictor_stops_at_once_though_its_interval_is_long(evictor: Evictor):
    assert wait_until(lambda: len(rounds(evictor)) == 1)
    begun = time.monotonic()
    evictor.stop()
    assert time.monotonic() - begun < 2
    assert not [t for t in threading.enumerate() if t.name == "evictor"]
