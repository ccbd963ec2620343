"""The engine: PostgreSQL through psycopg, a clear message when it is missing, and
SQLite's writers of one process taking turns."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from pypicache.db import get_engine, take_turns
from pypicache.errors import SettingsError


def test_postgresql_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an absent package looks like
    with pytest.raises(SettingsError) as raised:
        get_engine("postgresql+psycopg://pypicache@127.0.0.1/pypicache")
    assert str(raised.value) == (
        "sqlalchemy.url: PostgreSQL needs the psycopg driver: pip install 'pypicache[postgresql]'"
    )


def test_a_plain_postgresql_url_uses_psycopg():
    engine = get_engine("postgresql://pypicache@127.0.0.1/pypicache")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.url.database == "pypicache"
    finally:
        engine.dispose()


def test_postgresql_sessions_speak_utc(postgresql_url: str):
    engine = get_engine(postgresql_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW timezone").scalar() == "UTC"
    finally:
        engine.dispose()


# -- SQLite: one process's writers take turns ---------------------------------------------


def _table(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))


def test_many_threads_writing_at_once_all_commit(tmp_path: Path):
    engine = get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _table(engine)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(50):
                with engine.begin() as connection:
                    connection.execute(text("SELECT count(*) FROM t"))
                    connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": n * 100 + i})
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(DISTINCT x) FROM t")).scalar() == 600
    engine.dispose()


def test_a_writer_waits_for_the_one_writing_and_readers_do_not(tmp_path: Path):
    path = str(tmp_path / "db.sqlite")
    engine = get_engine(f"sqlite:///{path}")
    _table(engine)
    holder = engine.connect()
    holder.begin()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    written = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (2)"))
        written.set()

    writer = threading.Thread(target=write)
    writer.start()
    with engine.connect() as reader:  # WAL: a reader is never kept waiting
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0
    assert not written.wait(0.3), "a second writer went ahead of the open write"
    holder.commit()
    holder.close()
    assert written.wait(10), "the writer was not let in once the first had committed"
    writer.join(10)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 2
    engine.dispose()


@pytest.mark.parametrize("end", ["rollback", "raise", "close"])
def test_a_write_that_ends_without_a_commit_lets_the_next_in(tmp_path: Path, end: str):
    engine = get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _table(engine)
    if end == "raise":

        def fail() -> None:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("the unit of work failed")

        with pytest.raises(RuntimeError):
            fail()
    else:
        connection = engine.connect()
        connection.begin()
        connection.execute(text("INSERT INTO t VALUES (1)"))
        if end == "rollback":
            connection.rollback()
        connection.close()  # "close": returned to the pool with the write still open
    done = threading.Event()

    def write() -> None:
        with engine.begin() as other:
            other.execute(text("INSERT INTO t VALUES (2)"))
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the next writer was kept out"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()


def test_a_writer_kept_out_past_the_timeout_fails_as_a_locked_database(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    take_turns(engine, str(tmp_path / "db.sqlite"), timeout=0.2)
    _table(engine)
    holder = engine.connect()
    holder.begin()
    holder.execute(text("INSERT INTO t VALUES (1)"))
    failures: list[BaseException] = []

    def write() -> None:
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (2)"))
        except OperationalError as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(10)
    holder.rollback()
    holder.close()
    assert len(failures) == 1
    assert "database is locked" in str(failures[0])
    engine.dispose()
