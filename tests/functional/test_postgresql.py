"""What only a real PostgreSQL server shows: row locks taken by concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from pypicache.cache.retention import UsageLog
from pypicache.db import Database, get_engine
from tests.support.waiting import wait_until

SHA_A, SHA_B = "a" * 64, "b" * 64
T0 = datetime(2026, 1, 1)


@pytest.fixture
def engine(postgresql_url: str) -> Iterator[Engine]:
    engine = get_engine(postgresql_url)
    with engine.begin() as connection:
        project_id = connection.execute(
            text(
                "INSERT INTO projects (source, name, display_name, versions, private,"
                " merge_upstream) VALUES ('pypi', 'demo', 'demo', '[]', false, false)"
                " RETURNING id"
            )
        ).scalar_one()
        for sha256 in (SHA_A, SHA_B):
            connection.execute(
                text(
                    "INSERT INTO files (project_id, filename, sha256, yanked, has_metadata,"
                    " origin, cached_at) VALUES (:project, :filename, :sha256, false, false,"
                    " 'upstream', :at)"
                ),
                {"project": project_id, "filename": f"{sha256[0]}.whl", "sha256": sha256, "at": T0},
            )
    yield engine
    engine.dispose()


def waiting_for_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()


def test_usage_logs_of_two_processes_flush_at_once_without_deadlock(engine: Engine):
    usage = UsageLog(Database(engine))
    usage.touch(SHA_B)  # served in this order: b, then a
    usage.touch(SHA_A)
    failures: list[BaseException] = []

    def flush() -> None:
        try:
            usage.flush()
        except BaseException as exc:
            failures.append(exc)

    # Another process's flush: it holds a's row and is about to write b's.
    flushing = threading.Thread(target=flush)
    with engine.connect() as other, other.begin():
        other.execute(text("SET LOCAL lock_timeout = '10s'"))
        other.execute(
            text("UPDATE files SET last_used_at = :at WHERE sha256 = :sha256"),
            {"at": T0 + timedelta(seconds=1), "sha256": SHA_A},
        )
        flushing.start()
        assert wait_until(lambda: waiting_for_locks(engine) == 1), "the flush never waited"
        other.execute(
            text("UPDATE files SET last_used_at = :at WHERE sha256 = :sha256"),
            {"at": T0 + timedelta(seconds=1), "sha256": SHA_B},
        )
    flushing.join(30)
    assert not flushing.is_alive()
    assert failures == []
    with engine.connect() as connection:
        used = dict(connection.execute(text("SELECT sha256, last_used_at FROM files")).all())
    # The flush waited for the other process and then wrote its own, newer times.
    assert used[SHA_A] > T0 + timedelta(seconds=1)
    assert used[SHA_B] > T0 + timedelta(seconds=1)
