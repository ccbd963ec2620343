"""The models and the migrations describe the same schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from pypicache import db
from pypicache.models import Base, exists_on


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for the migrations to build from nothing."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.sqlite'}"
        return
    server = request.getfixturevalue("postgresql_server")
    name = server.create_database()
    yield server.url_for(name)
    server.drop_database(name)


def test_migrations_match_the_models(empty_database_url: str):
    db.upgrade(empty_database_url)
    engine = db.get_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            opts = {"compare_type": True, "include_object": exists_on(connection.dialect.name)}
            context = MigrationContext.configure(connection, opts=opts)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(empty_database_url: str):
    db.upgrade(empty_database_url)
    db.upgrade(empty_database_url)


def test_the_schema_head_the_code_knows_is_the_newest_migration():
    """A server that finds its database at SCHEMA_HEAD skips alembic (and its 11 MB)."""
    scripts = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    assert scripts.get_heads() == [db.SCHEMA_HEAD]


def test_a_migrated_database_is_current_and_an_empty_one_is_not(empty_database_url: str):
    assert not db.schema_is_current(empty_database_url)
    db.upgrade(empty_database_url)
    assert db.schema_is_current(empty_database_url)


def test_a_migration_apart_works_whatever_stands_for_standard_error(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
):
    """pytest's capture replaces sys.stderr with an object that is no file, as other
    servers' wrapped streams are: the child's output is passed on all the same."""
    db.upgrade_apart(empty_database_url)
    assert db.schema_is_current(empty_database_url)
    capsys.readouterr()


def test_rows_cached_before_several_upstreams_become_the_pypi_upstreams(empty_database_url: str):
    """0011: cached pages are the upstream ``pypi``'s, private projects get their own source,
    and the same name may then be cached from several sources; 0012: so are the
    follower's state and its dirty projects.  Both go back down."""
    config = db.alembic_config(empty_database_url)
    command.upgrade(config, "0010")
    engine = db.get_engine(empty_database_url)
    insert = text(
        "INSERT INTO projects (name, display_name, versions, private, merge_upstream)"
        " VALUES (:name, :name, '[]', :private, false)"
    )
    try:
        with engine.begin() as connection:
            connection.execute(insert, [{"name": "cached", "private": False}])
            connection.execute(insert, [{"name": "ours", "private": True}])
            connection.execute(
                text(
                    "INSERT INTO dirty_projects (name, required_serial, removed, attempts)"
                    " VALUES ('cached', 7, false, 0)"
                )
            )
        command.upgrade(config, "head")
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT name, source FROM projects ORDER BY name"))
            assert rows.all() == [("cached", "pypi"), ("ours", "@main")]
            # 0012: the follower's state and its waiting work are the upstream pypi's.
            assert connection.execute(text("SELECT upstream FROM follower_state")).all() == [
                ("pypi",)
            ]
            dirty = connection.execute(
                text("SELECT upstream, name, required_serial FROM dirty_projects")
            )
            assert dirty.all() == [("pypi", "cached", 7)]
            connection.execute(
                text(
                    "INSERT INTO projects (source, name, display_name, versions, private,"
                    " merge_upstream) VALUES ('pypi', 'ours', 'ours', '[]', false, false)"
                )
            )
        command.downgrade(config, "0010")
        with engine.begin() as connection:
            rows = connection.execute(text("SELECT name, private FROM projects ORDER BY name"))
            assert [(name, bool(private)) for name, private in rows] == [
                ("cached", False),
                ("ours", True),
            ]
            dirty = connection.execute(text("SELECT name, required_serial FROM dirty_projects"))
            assert dirty.all() == [("cached", 7)]
    finally:
        engine.dispose()


def test_a_migration_apart_never_imports_a_pypicache_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``python -m`` puts the working directory first on sys.path: a checkout of another
    version there must not be what migrates the database."""
    decoy = tmp_path / "checkout" / "pypicache"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the checkout, not the server')\n")
    (decoy / "db.py").write_text("raise SystemExit('the checkout migrated')\n")
    monkeypatch.chdir(decoy.parent)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    db.upgrade_apart(url)
    assert db.schema_is_current(url)
