"""Fixtures: migrated test databases, the fake upstream, and pypicache on waitress."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pypicache.app import make_wsgi_app
from pypicache.services import Services, build_services
from pypicache.settings import Settings
from pypicache.web.wsgi import PypicacheApp
from tests.support.browser import browser, page  # noqa: F401 (fixtures)
from tests.support.clients import http  # noqa: F401 (fixture)
from tests.support.databases import (
    DATABASE_ENV,
    POSTGRESQL_URL_ENV,
    PostgresqlServer,
    PostgresqlTemplate,
    SqliteTemplate,
    Template,
    configured_kind,
    postgresql_admin_url,
    postgresql_required,
)
from tests.support.fakeupstream import FakeUpstream
from tests.support.seaweedfs import s3_storage, seaweedfs  # noqa: F401 (fixtures)
from tests.support.servers import WaitressThread
from tests.support.webapp import make_testapp, testapp  # noqa: F401 (fixtures)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: a slip towards a real index fails loudly."""
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if host not in _LOOPBACK:
                raise ConnectionRefusedError(f"test tried to reach {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresqlServer]:
    """The server PYPICACHE_TEST_POSTGRESQL_URL names; without one the test is skipped."""
    admin_url = postgresql_admin_url()
    if admin_url is None:
        reason = f"{POSTGRESQL_URL_ENV} is not set: there is no PostgreSQL server to test on"
        if postgresql_required():
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresqlServer(admin_url)
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgresql_template(postgresql_server: PostgresqlServer) -> Iterator[PostgresqlTemplate]:
    """Migrated once per session with the real migrations; test databases copy it."""
    template = PostgresqlTemplate(postgresql_server)
    yield template
    template.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteTemplate]:
    """Migrated once per session with the real migrations; test databases copy the file."""
    template = SqliteTemplate(tmp_path_factory.mktemp("databases"))
    yield template
    template.close()


@pytest.fixture(scope="session")
def database_template(request: pytest.FixtureRequest) -> Template:
    """The template of the database PYPICACHE_TEST_DATABASE names (SQLite by default)."""
    kind = configured_kind()
    if kind == "postgresql" and postgresql_admin_url() is None:
        # Skipping every test would pass a run that tested nothing.
        pytest.fail(f"{DATABASE_ENV}=postgresql needs {POSTGRESQL_URL_ENV}")
    return request.getfixturevalue(f"{kind}_template")


@pytest.fixture
def postgresql_url(postgresql_template: PostgresqlTemplate) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, whatever PYPICACHE_TEST_DATABASE says."""
    url = postgresql_template.create()
    yield url
    postgresql_template.drop(url)


@pytest.fixture
def fresh_database_url(database_template: Template) -> Iterator[Callable[[], str]]:
    """Makes fresh, migrated databases of the configured kind; all dropped after the test."""
    created: list[str] = []

    def create() -> str:
        url = database_template.create()
        created.append(url)
        return url

    yield create
    for url in created:
        database_template.drop(url)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@dataclass
class RunningIndex:
    app: PypicacheApp
    server: WaitressThread
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def simple_url(self) -> str:
        return self.server.url + "/simple/"

    def stop(self) -> None:
        self.app.close()
        self.server.stop()


IndexFactory = Callable[..., RunningIndex]


@pytest.fixture
def make_index(tmp_path: Path, fresh_database_url: Callable[[], str]) -> Iterator[IndexFactory]:
    """Start pypicache with test settings; every index started is stopped after the test."""
    started: list[RunningIndex] = []

    def start(upstream_url: str | None, name: str = "index", **overrides: str) -> RunningIndex:
        data_dir = tmp_path / name
        data_dir.mkdir()
        ini = {
            "pypicache.upstream_url": upstream_url or "none",
            "pypicache.data_dir": str(data_dir),
            "sqlalchemy.url": overrides.get("sqlalchemy.url") or fresh_database_url(),
            "pypicache.upstream_timeout": "5",
            "pypicache.upstream_connect_timeout": "2",
            "pypicache.upstream_retries": "1",
            # Follower tests switch it on; elsewhere it would only add upstream traffic.
            "pypicache.follow_method": "off",
            **overrides,
        }
        if "pypicache.upstreams" in overrides:
            del ini["pypicache.upstream_url"]  # naming both is an error
        settings = Settings.from_mapping(ini, environ={})
        app = make_wsgi_app(settings)
        running = RunningIndex(app, WaitressThread(app).start(), settings)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()


@pytest.fixture
def index(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    """pypicache in front of the fake upstream."""
    return make_index(upstream.simple_url)


@pytest.fixture
def services_from() -> Iterator[Callable[[dict[str, str]], Services]]:
    """The services of pypicache's processes without a web server; all closed at the end."""
    built: list[Services] = []

    def build(ini: dict[str, str]) -> Services:
        settings = Settings.from_mapping(ini, environ={})
        settings.prepare_data_dir()
        services = build_services(settings)
        built.append(services)
        return services

    yield build
    for services in reversed(built):
        services.close()
