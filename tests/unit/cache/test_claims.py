"""Claims on a real database: one process fetches, the others wait, a dead one's claims lapse.

Each ``FillClaims`` here has its own ``Database`` (its own engine and owner name), as
each process of a deployment does; they meet only in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import make_url, select
from sqlalchemy.exc import IntegrityError

from pypicache.cache.claims import CLAIM_LEASE, FillClaims, database_guard
from pypicache.db import Database
from pypicache.errors import DatabaseUnavailable
from pypicache.models import FillClaim, utcnow
from tests.support.databases import SqliteTemplate
from tests.support.waiting import wait_until

KEY = "demo/demo-1.0-py3-none-any.whl"
# Short enough to wait out in a test, long enough that a loaded machine renews in time.
SHORT_LEASE = 1.0
# SQLite waits this long on a locked database; an answer well within it did not wait.
BUSY_TIMEOUT = 30.0

Process = Callable[..., FillClaims]


@pytest.fixture
def database_url(fresh_database_url: Callable[[], str]) -> str:
    return fresh_database_url()


@pytest.fixture
def process(database_url: str) -> Iterator[Process]:
    """Makes the claims of one more process; all stopped and disconnected after the test."""
    made: list[tuple[FillClaims, Database]] = []

    def make(lease: float = CLAIM_LEASE, url: str = database_url) -> FillClaims:
        database = Database.from_url(url)
        claims = FillClaims(database, lease=lease)
        made.append((claims, database))
        return claims

    yield make
    for claims, database in reversed(made):
        claims.stop()
        database.dispose()


@pytest.fixture
def observer(database_url: str) -> Iterator[Database]:
    """The database as an onlooker sees it, to read the claims table."""
    database = Database.from_url(database_url)
    yield database
    database.dispose()


@pytest.fixture
def read_only_url(sqlite_template: SqliteTemplate) -> Iterator[str]:
    """A migrated SQLite file opened read-only (mode=ro: chmod does not stop root)."""
    url = sqlite_template.create()
    yield f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true"
    sqlite_template.drop(url)


def expiry(observer: Database, key: str) -> datetime | None:
    with observer.unit_of_work() as db:
        return db.scalar(select(FillClaim.expires_at).where(FillClaim.key == key))


def renewers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "fill-claims" and t.is_alive()}


def timed(call: Callable[[], bool]) -> tuple[bool, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def test_one_process_wins_a_claim_and_the_others_see_it_held(process: Process) -> None:
    first, second, third = process(), process(), process()

    assert first.try_claim(KEY)

    assert not second.try_claim(KEY)
    assert not third.try_claim(KEY)
    assert second.held_elsewhere(KEY)
    assert third.held_elsewhere(KEY)
    assert not first.held_elsewhere(KEY), "its own claim is not held elsewhere"
    assert second.try_claim("demo/demo-1.0.tar.gz"), "a claim covers its key only"


def test_a_released_claim_can_be_taken_and_only_its_owner_releases_it(
    process: Process, observer: Database
) -> None:
    first, second = process(), process()
    assert first.try_claim(KEY)

    second.release(KEY)  # not its claim: nothing happens

    assert second.held_elsewhere(KEY)
    first.release(KEY)
    assert expiry(observer, KEY) is None
    assert not second.held_elsewhere(KEY)
    assert second.try_claim(KEY)
    assert first.held_elsewhere(KEY)


def test_a_claim_ended_with_the_work_it_was_for_ends_only_when_that_work_commits(
    database_url: str, observer: Database
) -> None:
    database = Database.from_url(database_url)
    claims = FillClaims(database, lease=SHORT_LEASE)
    try:
        assert claims.try_claim(KEY)
        with pytest.raises(RuntimeError):
            _end_with_failing_work(database, claims)
        held_until = expiry(observer, KEY)
        assert held_until is not None, "rolled back, so still claimed"
        assert wait_until(
            lambda: (expiry(observer, KEY) or held_until) > held_until,
            timeout=SHORT_LEASE + 10,
        ), "still held, so still renewed"

        with database.unit_of_work() as db:
            claims.release_in(db, KEY)

        assert expiry(observer, KEY) is None
        claims.release(KEY)  # ended already: nothing to do
        assert claims.try_claim(KEY), "free for the next fill"
    finally:
        claims.stop()
        database.dispose()


def _end_with_failing_work(database: Database, claims: FillClaims) -> None:
    with database.unit_of_work() as db:
        claims.release_in(db, KEY)
        raise RuntimeError("recording the work failed")


def test_a_claim_nobody_renews_lapses_at_its_lease_and_another_process_takes_it(
    process: Process, observer: Database
) -> None:
    dead = process(lease=SHORT_LEASE)
    assert dead.try_claim(KEY)
    dead.stop()  # what a killed process does to its claims: nothing any more
    lapses = expiry(observer, KEY)
    assert lapses is not None
    survivor = process()

    assert not survivor.try_claim(KEY), "live until its lease ends"
    assert wait_until(lambda: survivor.try_claim(KEY), timeout=SHORT_LEASE + 10)

    assert utcnow() >= lapses
    assert dead.held_elsewhere(KEY), "the survivor holds it now"


def test_the_renewal_keeps_a_held_claim_alive_past_its_lease(
    process: Process, observer: Database
) -> None:
    holder, other = process(lease=SHORT_LEASE), process()
    assert holder.try_claim(KEY)
    first_expiry = expiry(observer, KEY)
    assert first_expiry is not None
    past = first_expiry + timedelta(seconds=SHORT_LEASE / 2)

    assert wait_until(lambda: utcnow() > past, timeout=SHORT_LEASE + 10)

    assert other.held_elsewhere(KEY)
    assert not other.try_claim(KEY)
    renewed = expiry(observer, KEY)
    assert renewed is not None
    assert renewed > past


def test_stop_ends_the_renewal_thread_and_no_claim_is_renewed_after_it(
    process: Process, observer: Database
) -> None:
    before = renewers()
    claims = process(lease=SHORT_LEASE)
    assert claims.try_claim(KEY)
    (renewer,) = renewers() - before

    claims.stop()

    assert not renewer.is_alive()
    assert claims.try_claim("demo/demo-2.0.tar.gz"), "claiming still works"
    assert renewers() - before == set(), "a stopped FillClaims starts no thread"
    last = expiry(observer, KEY)
    assert last is not None
    assert wait_until(lambda: utcnow() > last + timedelta(seconds=SHORT_LEASE / 2), 10)
    assert expiry(observer, KEY) == last


def test_wait_while_held_returns_at_once_when_nobody_holds_the_key(process: Process) -> None:
    waiter = process()

    held, waited = timed(
        lambda: waiter.wait_while_held(KEY, time.monotonic() + 10, threading.Event())
    )

    assert held is True
    assert waited < 5


def test_wait_while_held_returns_true_once_the_holder_releases(process: Process) -> None:
    holder, waiter = process(), process()
    assert holder.try_claim(KEY)
    release = threading.Timer(0.2, holder.release, args=[KEY])
    started = time.monotonic()  # before the timer starts: it releases 0.2 s after that
    release.start()
    try:
        free = waiter.wait_while_held(KEY, started + 10, threading.Event())
    finally:
        release.cancel()
        release.join()
    waited = time.monotonic() - started

    assert free is True
    assert 0.2 <= waited < 10
    assert waiter.try_claim(KEY)


def test_wait_while_held_gives_up_at_its_deadline(process: Process) -> None:
    holder, waiter = process(), process()
    assert holder.try_claim(KEY)

    free, waited = timed(
        lambda: waiter.wait_while_held(KEY, time.monotonic() + 0.3, threading.Event())
    )

    assert free is False
    assert 0.3 <= waited < 5
    assert waiter.held_elsewhere(KEY), "giving up takes nothing from the holder"


def test_wait_while_held_ends_when_the_stop_event_is_set(process: Process) -> None:
    holder, waiter = process(), process()
    assert holder.try_claim(KEY)
    stop = threading.Event()
    stopping = threading.Timer(0.2, stop.set)
    started = time.monotonic()  # before the timer starts: it sets the event 0.2 s after that
    stopping.start()
    try:
        free = waiter.wait_while_held(KEY, started + 60, stop)
    finally:
        stopping.cancel()
        stopping.join()
    waited = time.monotonic() - started

    assert free is False
    assert 0.2 <= waited < 10, "it ended on the event, long before its deadline"


def test_a_database_refusing_writes_ends_a_claim_at_once(
    process: Process, read_only_url: str
) -> None:
    claims = process(url=read_only_url)

    start = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="claiming"):
        claims.try_claim(KEY)
    assert time.monotonic() - start < BUSY_TIMEOUT / 3, "no busy wait, no retry loop"

    assert not claims.held_elsewhere(KEY), "reading still works"
    claims.release(KEY)  # logged, not raised: an unreleased claim lapses on its own


def test_a_database_refusing_reads_ends_a_wait_at_once(process: Process, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    claims = process(url=f"sqlite:///{broken}")

    with pytest.raises(DatabaseUnavailable, match="reading the claim"):
        claims.wait_while_held(KEY, time.monotonic() + BUSY_TIMEOUT, threading.Event())
    with pytest.raises(DatabaseUnavailable, match="claiming"):
        claims.try_claim(KEY)


def test_a_wrong_query_is_a_bug_and_not_an_outage(observer: Database) -> None:
    row = {"key": KEY, "owner": "someone", "expires_at": utcnow()}
    with observer.unit_of_work() as db:
        db.add(FillClaim(**row))

    with (
        pytest.raises(IntegrityError),
        database_guard("inserting twice"),
        observer.unit_of_work() as db,
    ):
        db.add(FillClaim(**row))
