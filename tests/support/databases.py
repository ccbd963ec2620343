"""Test databases: SQLite or PostgreSQL, migrated once per session, a fresh copy per use.

The tests run on the database ``PYPICACHE_TEST_DATABASE`` names (``sqlite``, the
default, or ``postgresql``).  PostgreSQL needs ``PYPICACHE_TEST_POSTGRESQL_URL``: the
URL of a server's maintenance database on which the tests may CREATE and DROP
DATABASE.  Real alembic migrations build one template per session; every test
database is a copy of it (a file copy, or ``CREATE DATABASE ... TEMPLATE``), which
is what keeps a test's set-up in the milliseconds.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol

from sqlalchemy import URL, Engine, create_engine, make_url, text

from pypicache import db

DATABASE_ENV = "PYPICACHE_TEST_DATABASE"
POSTGRESQL_URL_ENV = "PYPICACHE_TEST_POSTGRESQL_URL"
REQUIRE_POSTGRESQL_ENV = "PYPICACHE_TEST_REQUIRE_POSTGRESQL"
KINDS = ("sqlite", "postgresql")
# Every database the tests create starts with this, so a leftover one is recognisable.
PREFIX = "pypicache_test_"


def configured_kind() -> str:
    """The database ``make_index`` uses, from ``PYPICACHE_TEST_DATABASE``."""
    kind = os.environ.get(DATABASE_ENV, "").strip().lower() or "sqlite"
    if kind not in KINDS:
        raise ValueError(f"{DATABASE_ENV} must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def postgresql_admin_url() -> str | None:
    return os.environ.get(POSTGRESQL_URL_ENV, "").strip() or None


def postgresql_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRESQL_ENV, "") == "1"


class Template(Protocol):
    def create(self) -> str:
        """A new database with the migrated schema; returns its SQLAlchemy URL."""
        ...

    def drop(self, url: str) -> None:
        """Remove a database ``create`` returned."""
        ...

    def close(self) -> None:
        """Remove the template itself."""
        ...


class SqliteTemplate:
    """A migrated SQLite file; each database is a copy of it in its own directory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._path = directory / "template.sqlite"
        db.upgrade(f"sqlite:///{self._path}")

    def create(self) -> str:
        target = self._directory / uuid.uuid4().hex / "pypicache.sqlite"
        target.parent.mkdir()
        shutil.copy(self._path, target)
        return f"sqlite:///{target}"

    def drop(self, url: str) -> None:
        shutil.rmtree(Path(make_url(url).database or "").parent, ignore_errors=True)

    def close(self) -> None:
        self._path.unlink(missing_ok=True)


class PostgresqlServer:
    """CREATE and DROP DATABASE through the maintenance database of ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.url: URL = db.postgresql_url(make_url(admin_url))
        self._engine: Engine = create_engine(self.url, isolation_level="AUTOCOMMIT")

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create_database(self, *, template: str | None = None) -> str:
        """A new, uniquely named database (a copy of ``template`` if given); its name."""
        name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
        statement = f'CREATE DATABASE "{name}"'
        if template is not None:
            statement += f' TEMPLATE "{template}"'
        with self._engine.connect() as connection:
            connection.execute(text(statement))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``; FORCE first ends the connections a test left behind (a subprocess)."""
        with self._engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self._engine.dispose()


class PostgresqlTemplate:
    """A database migrated once; each test database is ``CREATE DATABASE ... TEMPLATE`` it."""

    def __init__(self, server: PostgresqlServer) -> None:
        self._server = server
        self._name = server.create_database()
        try:
            db.upgrade(server.url_for(self._name))
        except BaseException:
            server.drop_database(self._name)
            raise

    def create(self) -> str:
        return self._server.url_for(self._server.create_database(template=self._name))

    def drop(self, url: str) -> None:
        self._server.drop_database(make_url(url).database or "")

    def close(self) -> None:
        self._server.drop_database(self._name)
