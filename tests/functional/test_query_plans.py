"""The queries that matter use indexes on PostgreSQL: EXPLAIN the statements the code sends.

The statements are captured from the real code paths (a project page, the follower's
reconciliation, the admin page's search, an eviction) on a database with 20,000 projects, then
explained with sequential scans priced out: a plan that still names no index shows a
query no index can serve.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from pypicache.cache.blobs import Blobs
from pypicache.cache.claims import FillClaims
from pypicache.cache.index import IndexService
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.projectlist import DatabaseProjects, ProjectList
from pypicache.cache.quarantine import Quarantine
from pypicache.cache.retention import Retention
from pypicache.db import Database, get_engine
from pypicache.ops.reports import Reports
from pypicache.settings import Settings
from pypicache.storage.local import LocalBlobStore

PROJECTS = 20_000


@pytest.fixture
def engine(postgresql_url: str) -> Iterator[Engine]:
    engine = get_engine(postgresql_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO projects (source, name, display_name, versions, private,"
                " merge_upstream) SELECT CASE WHEN g % 10 = 0 THEN '@main' ELSE 'pypi' END,"
                " 'project-' || g, 'Project-' || g, '[]', g % 10 = 0, false"
                " FROM generate_series(1, :n) AS g"
            ),
            {"n": PROJECTS},
        )
        connection.execute(
            text(
                "INSERT INTO files (project_id, filename, version, sha256, metadata_sha256,"
                " yanked, has_metadata, origin) SELECT p.id, p.name || '-' || v || '.tar.gz',"
                " v::text, md5(p.name || v) || md5(v || p.name),"
                " md5(v || p.name) || md5(p.name || v), false, true, 'upstream'"
                " FROM projects AS p, generate_series(1, 3) AS v"
            )
        )
        connection.execute(text("ANALYZE"))
    yield engine
    engine.dispose()


@pytest.fixture
def settings(postgresql_url: str, tmp_path: Path) -> Settings:
    settings = Settings.from_mapping(
        {
            "pypicache.upstream_url": "none",
            "pypicache.data_dir": str(tmp_path),
            "sqlalchemy.url": postgresql_url,
        },
        environ={},
    )
    settings.prepare_data_dir()
    return settings


@pytest.fixture
def store(settings: Settings) -> LocalBlobStore:
    return LocalBlobStore(settings.blob_dir, settings.tmp_dir)


@pytest.fixture
def service(engine: Engine, settings: Settings, store: LocalBlobStore) -> Iterator[IndexService]:
    database = Database(engine)
    service = IndexService(
        settings,
        database,
        source="pypi",
        upstream=None,
        locks=KeyedLocks(),
        claims=FillClaims(database),
        blobs=Blobs(database, store, Quarantine(store, settings.quarantine_dir)),
    )
    yield service
    service.stop()


@contextmanager
def statements(engine: Engine, table: str) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs from ``table`` that the engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(row[0] for row in rows)


def assert_uses(engine: Engine, captured: list[tuple[str, Any]], *indexes: str) -> None:
    """Each query goes through one of ``indexes``."""
    assert captured, "the code sent no query to look at"
    for statement, parameters in captured:
        explained = plan(engine, statement, parameters)
        assert any(index in explained for index in indexes), (
            f"{statement}\n--- plans as ---\n{explained}"
        )


def test_a_project_page_is_read_through_the_name_and_file_indexes(
    engine: Engine, service: IndexService
):
    with statements(engine, "projects") as projects, statements(engine, "files") as files:
        page = service.project_page("project-12345").page
    assert sorted(page.files) == [f"project-12345-{v}.tar.gz" for v in (1, 2, 3)]
    assert_uses(engine, projects, "uq_projects_source_name", "ix_projects_name")
    assert_uses(engine, files, "uq_files_project_id_filename")


def test_the_followers_reconciliation_looks_names_up_by_index(
    engine: Engine, service: IndexService
):
    names = [f"project-{n}" for n in range(1, 1200, 3)] + ["not-cached-anywhere"]
    with statements(engine, "projects") as captured:
        serials = service.cached_serials(names)
    assert len(serials) == len([n for n in range(1, 1200, 3) if n % 10])  # not the private ones
    assert_uses(engine, captured, "uq_projects_source_name", "ix_projects_name")


def test_the_admin_search_for_part_of_a_name_uses_the_trigram_index(
    engine: Engine, service: IndexService, tmp_path: Path
):
    database = Database(engine)
    projects = ProjectList(tmp_path, [], DatabaseProjects(database), ttl=60)
    reports = Reports(database, projects, ["@main", "pypi"])
    with statements(engine, "projects") as captured:
        found = reports.search_projects("ject-1234")
    assert [row.name for row in found.items][:2] == ["project-1234", "project-12340"]
    assert found.total == 11
    assert_uses(engine, captured, "ix_projects_name_trgm")


def test_an_eviction_looks_up_who_else_uses_the_metadata_by_index(
    engine: Engine, store: LocalBlobStore
):
    writer = store.writer()
    writer.write(b"the cached bytes")
    sha256 = writer.commit(None)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE files SET sha256 = :sha256, size = 16, cached_at = now()"
                " WHERE filename = 'project-7-1.tar.gz'"
            ),
            {"sha256": sha256},
        )
    retention = Retention(Database(engine), store, limit=1)
    with statements(engine, "files") as captured:
        evicted = retention.collect().evicted
    assert [e.sha256 for e in evicted] == [sha256]
    assert not store.exists(sha256)
    by_metadata = [(s, p) for s, p in captured if "files.metadata_sha256 IN" in s]
    assert_uses(engine, by_metadata, "ix_files_metadata_sha256")
