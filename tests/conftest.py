"""Fixtures: a migrated template database, the fake upstream, and pypicache on waitress."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pypicache import db, make_app
from pypicache.settings import Settings
from pypicache.wsgi import PypicacheApp
from tests.support.fakeupstream import FakeUpstream
from tests.support.servers import WaitressThread

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
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per session; each test copies the file (real migrations, not create_all)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    db.upgrade(f"sqlite:///{path}")
    return path


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
def make_index(tmp_path: Path, template_db: Path) -> Iterator[IndexFactory]:
    """Start pypicache with test settings; every index started is stopped after the test."""
    started: list[RunningIndex] = []

    def start(upstream_url: str | None, name: str = "index", **overrides: str) -> RunningIndex:
        data_dir = tmp_path / name
        data_dir.mkdir()
        database = data_dir / "pypicache.sqlite"
        shutil.copy(template_db, database)
        ini = {
            "pypicache.upstream_url": upstream_url or "none",
            "pypicache.data_dir": str(data_dir),
            "sqlalchemy.url": f"sqlite:///{database}",
            "pypicache.upstream_timeout": "5",
            "pypicache.upstream_connect_timeout": "2",
            "pypicache.upstream_retries": "1",
            # Follower tests switch it on; elsewhere it would only add upstream traffic.
            "pypicache.follow_method": "off",
            **overrides,
        }
        settings = Settings.from_mapping(ini, environ={})
        app = make_app(settings)
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
