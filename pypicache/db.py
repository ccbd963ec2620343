"""The metadata database: engines, the unit of work, and schema migrations.

SQLite lets one connection write at a time.  A writer that finds the file locked sleeps
in SQLite's busy handler and tries again, sleeping up to 100 ms at a time, so under a
burst of small writes from many threads (a cold install: a claim, a fill and a release
per file) time went in sleeps while nobody held the lock.  So a process's writers take
turns on a lock of their own (``take_turns``): a connection takes the turn before its
first writing statement and gives it back when it returns to the pool, after its commit
or rollback, and the next writer wakes at once.  Other processes on the same file still
wait in the busy handler.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files as package_files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from pypicache.errors import DatabaseUnavailable, SettingsError
from pypicache.settings import DATABASE_KEY

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# The newest migration (tests/unit/test_migrations.py holds it to the scripts): a process
# that finds the schema there never imports alembic, which would cost it 11 MB.
SCHEMA_HEAD = "0019"

# How long a writer waits for SQLite's lock before "database is locked".
SQLITE_BUSY_TIMEOUT = 30.0
# Connections kept open to a SQLite file.  A cold install runs the serving threads and
# dozens of fills at once; past SQLAlchemy's default of 5, every connection given back
# was closed and the next one opened again (and its pragmas run): 8% of a cold install's
# CPU.  Each keeps a small page cache (SQLITE_CACHE_KIB), so many cost little memory.
SQLITE_POOL_SIZE = 32
SQLITE_CACHE_KIB = 512


# Statements that never take SQLite's write lock by themselves.
_READS = ("SELECT", "PRAGMA", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK")
_HOLDS_TURN = "pypicache_holds_write_turn"

_turns: dict[str, threading.Lock] = {}
_turns_lock = threading.Lock()


def _turn_for(database: str) -> threading.Lock:
    with _turns_lock:
        return _turns.setdefault(database, threading.Lock())


def take_turns(engine: Engine, database: str, timeout: float) -> None:
    """Make ``engine``'s writers take this process's turn on ``database`` (a file path).

    A writer that waits longer than ``timeout`` fails as SQLite itself would after its
    busy timeout: "database is locked".
    """
    turn = _turn_for(database)

    def before_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        info = conn.info
        if info.get(_HOLDS_TURN) or statement.lstrip()[:9].upper().startswith(_READS):
            return
        if not turn.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked (this process's writers)")
        info[_HOLDS_TURN] = True

    def give_back(**event_args: Any) -> None:
        """Returned to the pool (after a commit or a rollback), or thrown away."""
        record = event_args.get("connection_record")
        if record is not None and record.info.pop(_HOLDS_TURN, False):
            turn.release()

    event.listen(engine, "before_cursor_execute", before_execute)
    for name in ("reset", "invalidate", "close"):
        event.listen(engine.pool, name, give_back, named=True)


def get_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # A "file:" URI (uri=true) names its file in URI syntax: not a path to create.
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=-1,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if url.database and url.database != ":memory:":
            take_turns(engine, url.database, SQLITE_BUSY_TIMEOUT)
        return engine
    if url.get_backend_name() == "postgresql":
        url = postgresql_url(url)
        if "options" not in url.query:
            # Timestamps are naive UTC; a server in another time zone must not shift them.
            url = url.update_query_dict({"options": "-c timezone=UTC"})
    return create_engine(url, pool_pre_ping=True)


def dialect_of(db: Session) -> str:
    """ "postgresql" or "sqlite": which of the two databases the session writes to, for
    statements built once in each one's dialect (an upsert's ON CONFLICT)."""
    return "postgresql" if db.get_bind().dialect.name == "postgresql" else "sqlite"


def postgresql_url(url: URL) -> URL:
    """``url`` with the psycopg (3) driver: psycopg2, SQLAlchemy's default, is no dependency."""
    if url.drivername not in ("postgresql", "postgresql+psycopg"):
        return url  # another driver, asked for by name
    try:
        import psycopg  # noqa: F401  (imported to see whether it can be)
    except ImportError as exc:
        raise SettingsError(
            f"{DATABASE_KEY}: PostgreSQL needs the psycopg driver: "
            "pip install 'pypicache[postgresql]'"
        ) from exc
    return url.set(drivername="postgresql+psycopg")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the serving threads read while a fill commits; foreign keys make
    # ON DELETE CASCADE real.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


class Database:
    """The one way to the metadata database, the same in requests, threads and commands.

    A unit of work is one transaction: committed when the block ends, rolled back when it
    raises, its session closed either way.  Objects loaded in it stay readable afterwards
    (nothing expires on commit), so a unit of work can hand its results out.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, database_url: str) -> Database:
        return cls(get_engine(database_url))

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close the pooled connections (the process is done with the database)."""
        self.engine.dispose()


def alembic_config(database_url: str) -> AlembicConfig:
    """Alembic pointed at our migrations wherever the package is installed."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(package_files("pypicache.migrations")))
    cfg.attributes["database_url"] = database_url
    return cfg


def schema_is_current(database_url: str) -> bool:
    """Whether the database says it is at ``SCHEMA_HEAD`` (False for an empty one)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and (not url.database or url.database == ":memory:"):
        return False  # a fresh database each time it is opened
    engine = get_engine(database_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            return {row[0] for row in versions} == {SCHEMA_HEAD}
    except DatabaseError:
        return False  # no such table yet: never migrated
    finally:
        engine.dispose()


def upgrade(database_url: str) -> None:
    """Create or upgrade the schema to the newest migration.

    Several processes starting at once on one SQLite file take turns, so only
    the first migrates and the others find the schema current.
    """
    if schema_is_current(database_url):
        return
    from alembic import command

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        command.upgrade(alembic_config(database_url), "head")
        return
    lock_path = Path(url.database).with_name(Path(url.database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(alembic_config(database_url), "head")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade_apart(database_url: str) -> None:
    """``upgrade`` in a child process: a server lives for months, and would otherwise keep
    alembic's and Mako's modules (11 MB) for the one migration it ran at its start.

    The URL goes to the child on its standard input, never on a command line that
    ``ps`` shows; what the child prints goes to this process's standard error.
    """
    if schema_is_current(database_url):
        return
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    child = subprocess.run(
        # -P: not the working directory first on sys.path, where another pypicache (a
        # checkout) would migrate with its own scripts.
        [sys.executable, "-P", "-m", "pypicache.db"],
        input=database_url,
        text=True,
        # Captured, not inherited: the server's stderr may be no file at all (a test's
        # capture, a wrapped stream under another server).
        capture_output=True,
        env=env,
        check=False,
    )
    for output in (child.stdout, child.stderr):
        if output:
            sys.stderr.write(output)
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {child.returncode}"
        raise DatabaseUnavailable(f"migrating the database failed: {reason}")


if __name__ == "__main__":
    upgrade(sys.stdin.read())
