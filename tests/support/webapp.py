"""The real app in process behind WebTest: HTTP-level tests without a server or a socket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import webtest

from pypicache.app import make_wsgi_app
from pypicache.settings import Settings
from tests.support.fakeupstream import FakeUpstream

TestAppFactory = Callable[..., webtest.TestApp]


@pytest.fixture
def make_testapp(
    tmp_path: Path, fresh_database_url: Callable[[], str], upstream: FakeUpstream
) -> Iterator[TestAppFactory]:
    """Build the app on a fresh database and data dir, in front of the fake upstream.

    Settings override the test defaults by their ini names; every app built is closed
    (its background threads stopped) after the test.
    """
    built: list = []

    def build(**overrides: str) -> webtest.TestApp:
        data_dir = tmp_path / f"app{len(built)}"
        data_dir.mkdir()
        ini = {
            "pypicache.upstream_url": upstream.simple_url,
            "pypicache.data_dir": str(data_dir),
            "sqlalchemy.url": fresh_database_url(),
            "pypicache.upstream_timeout": "5",
            "pypicache.upstream_connect_timeout": "2",
            "pypicache.upstream_retries": "1",
            "pypicache.follow_method": "off",
            **overrides,
        }
        app = make_wsgi_app(Settings.from_mapping(ini, environ={}))
        built.append(app)
        return webtest.TestApp(app)

    yield build
    for app in reversed(built):
        app.close()


@pytest.fixture
def testapp(make_testapp: TestAppFactory) -> webtest.TestApp:
    """The app with the default test settings, in front of the fake upstream."""
    return make_testapp()
