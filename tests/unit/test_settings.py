from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pypi_simple import PYPI_SIMPLE_ENDPOINT

from pypicache import cli
from pypicache.errors import SettingsError
from pypicache.settings import BOTO3_MISSING, Settings, env_name
from pypicache.storage.local import LocalBlobStore, make_store


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
        ("pypicache.storage", "gs://bucket/prefix"),
        ("pypicache.storage", "/srv/blobs"),
        ("pypicache.storage", "s3://bucket/a//b"),
        ("pypicache.storage", "s3://bucket/prefix?versioned=1"),
        ("pypicache.s3_endpoint_url", "localhost:9000"),
        ("pypicache.s3_endpoint_url", "http://key:secret@127.0.0.1:9000"),
        ("pypicache.s3_region", "us east"),
        ("pypicache.storage_redirect", "sometimes"),
        # Redirects need an object store to send clients to.
        ("pypicache.storage_redirect", "true"),
    ],
)
def test_bad_values_name_the_setting(key, value):
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_mapping({key: value}, environ={})
    message = str(excinfo.value)
    assert message.startswith(key)
    assert "\n" not in message


def test_storage_defaults_to_the_local_store_under_the_data_dir(tmp_path):
    settings = Settings.from_mapping({"pypicache.data_dir": str(tmp_path)}, environ={})
    assert settings.s3_bucket is None
    assert settings.storage_url is None
    assert not settings.storage_redirect
    store = make_store(settings)
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"


def test_s3_storage_settings_from_the_ini_and_the_environment():
    ini = {"pypicache.storage": "s3://ini-bucket/ignored", "pypicache.s3_region": "eu-west-1"}
    environ = {
        "PYPICACHE_STORAGE": "s3://pkg.example-bucket/cache/blobs/",
        "PYPICACHE_S3_ENDPOINT_URL": "http://127.0.0.1:8333/",
        "PYPICACHE_STORAGE_REDIRECT": "yes",
    }
    settings = Settings.from_mapping(ini, environ=environ)
    assert settings.s3_bucket == "pkg.example-bucket"
    assert settings.s3_prefix == "cache/blobs"
    assert settings.storage_url == "s3://pkg.example-bucket/cache/blobs"
    assert settings.s3_endpoint_url == "http://127.0.0.1:8333"
    assert settings.s3_region == "eu-west-1"
    assert settings.storage_redirect
    assert env_name("pypicache.s3_endpoint_url") == "PYPICACHE_S3_ENDPOINT_URL"


def test_a_bucket_without_a_prefix_keeps_keys_at_the_top():
    settings = Settings.from_mapping({"pypicache.storage": "s3://just-a-bucket"}, environ={})
    assert settings.s3_bucket == "just-a-bucket"
    assert settings.s3_prefix == ""


@pytest.mark.parametrize(
    ("bucket", "reason"),
    [
        ("ab", "3 to 63 characters"),
        ("a" * 64, "3 to 63 characters"),
        ("Upper-case", "lowercase letters"),
        ("under_score", "lowercase letters"),
        ("-leading-hyphen", "begin and end"),
        ("trailing-dot.", "begin and end"),
        ("two..dots", "next to each other"),
        ("dot.-hyphen", "next to each other"),
        ("192.168.10.20", "IP address"),
        ("xn--punycode", "reserves"),
        ("access-point-s3alias", "reserves"),
    ],
)
def test_bucket_names_follow_the_s3_rules(bucket, reason):
    with pytest.raises(SettingsError, match=reason) as excinfo:
        Settings.from_mapping({"pypicache.storage": f"s3://{bucket}/prefix"}, environ={})
    assert str(excinfo.value).startswith("pypicache.storage: bucket name")


def test_bucket_names_of_3_and_63_characters_are_valid():
    for bucket in ("abc", "a" * 63, "my.bucket-2"):
        settings = Settings.from_mapping({"pypicache.storage": f"s3://{bucket}/p"}, environ={})
        assert settings.s3_bucket == bucket


def test_s3_storage_without_boto3_names_the_extra_to_install(monkeypatch, tmp_path):
    ini = {"pypicache.storage": "s3://some-bucket/blobs", "pypicache.data_dir": str(tmp_path)}
    settings = Settings.from_mapping(ini, environ={})  # while boto3 is there
    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "pypicache.storage.s3", raising=False)
    with pytest.raises(SettingsError) as parsing:
        Settings.from_mapping(ini, environ={})
    assert str(parsing.value) == BOTO3_MISSING
    assert "pip install 'pypicache[s3]'" in BOTO3_MISSING
    with pytest.raises(SettingsError) as starting:
        make_store(settings)
    assert str(starting.value) == BOTO3_MISSING


def test_a_command_without_boto3_says_which_extra_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PYPICACHE_STORAGE", "s3://some-bucket/blobs")
    monkeypatch.setitem(sys.modules, "boto3", None)
    assert cli.main(["verify", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"pypicache: bad setting {BOTO3_MISSING}\n"
