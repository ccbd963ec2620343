from __future__ import annotations

from pathlib import Path

import pytest
from pypi_simple import PYPI_SIMPLE_ENDPOINT

from pypicache.errors import SettingsError
from pypicache.settings import Settings, env_name


def test_defaults_are_pypi_sqlite_and_a_local_data_dir():
    settings = Settings.from_mapping({}, environ={})
    assert settings.upstream_url == PYPI_SIMPLE_ENDPOINT
    scheme, _, rest = PYPI_SIMPLE_ENDPOINT.partition("://")
    assert settings.changelog_url == f"{scheme}://{rest.split('/')[0]}/pypi"
    assert settings.data_dir == Path("pypicache-data")
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("pypicache-data/pypicache.sqlite")
    assert settings.follow_interval == 60


def test_precedence_is_ini_then_environment_then_flags():
    ini = {"pypicache.page_ttl": "10", "pypicache.follow_interval": "5"}
    environ = {"PYPICACHE_PAGE_TTL": "20", "PYPICACHE_DATABASE_URL": "sqlite:////tmp/x.db"}
    settings = Settings.from_mapping(
        ini, environ=environ, overrides={"pypicache.page_ttl": "30", "pypicache.data_dir": None}
    )
    assert settings.page_ttl == 30
    assert settings.follow_interval == 5
    assert settings.database_url == "sqlite:////tmp/x.db"
    assert env_name("pypicache.read_auth") == "PYPICACHE_READ_AUTH"


def test_upstream_none_and_file_urls():
    none = Settings.from_mapping({"pypicache.upstream_url": "none"}, environ={})
    assert none.upstream_url is None
    assert none.changelog_url is None
    local = Settings.from_mapping({"pypicache.upstream_url": "file:///srv/simple"}, environ={})
    assert local.upstream_url == "file:///srv/simple/"
    assert local.changelog_url is None
    custom = Settings.from_mapping(
        {"pypicache.upstream_url": "http://mirror.example/simple/"}, environ={}
    )
    assert custom.changelog_url == "http://mirror.example/pypi"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pypicache.follow_interval", "soon"),
        ("pypicache.follow_interval", "0"),
        ("pypicache.page_ttl", "-1"),
        ("pypicache.upstream_retries", "many"),
        ("pypicache.migrate_on_start", "perhaps"),
        ("pypicache.upstream_url", "ftp://example.invalid/"),
        ("pypicache.upstream_url", "https://user:secret@example.invalid/simple/"),
        ("pypicache.changelog_url", "not a url"),
        ("sqlalchemy.url", "nonsense"),
        ("pypicache.no_such_thing", "1"),
    ],
)
def test_bad_values_name_the_setting(key, value):
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_mapping({key: value}, environ={})
    message = str(excinfo.value)
    assert message.startswith(key)
    assert "\n" not in message
