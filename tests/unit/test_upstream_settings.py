"""pypicache.upstreams and pypicache.routes: what an operator writes, and what it means."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.errors import SettingsError
from pypicache.settings import Settings
from pypicache.upstream.routing import Route, Upstream, normalize_pattern, route_for

NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)


def parse(environ: dict[str, str], ini: dict[str, str] | None = None) -> Settings:
    return Settings.from_mapping(ini or {}, environ=environ)


def test_without_upstreams_the_upstream_url_is_the_one_upstream_named_pypi():
    settings = parse({"PYPICACHE_UPSTREAM_URL": "http://a.example/simple"})
    assert settings.upstreams == (
        Upstream("pypi", "http://a.example/simple/", "http://a.example/pypi"),
    )
    assert parse({"PYPICACHE_UPSTREAM_URL": "none"}).upstreams == (Upstream("pypi", None),)


def test_each_upstream_has_its_changelog_as_given_else_on_its_host():
    settings = parse(
        {
            "PYPICACHE_UPSTREAMS": "a=http://a.example/simple/ b=https://b.example/x/simple/"
            " c=http://c.example/ d=file:///srv/tree/",
            "PYPICACHE_CHANGELOG_URL": "http://feed.example/rpc",
            "PYPICACHE_CHANGELOGS": "c=none",
        }
    )
    assert [u.changelog_url for u in settings.upstreams] == [
        "http://feed.example/rpc",  # pypicache.changelog_url is the first upstream's
        "https://b.example/pypi",
        None,
        None,  # a file:// tree has none
    ]
    with pytest.raises(SettingsError, match="no upstream is named 'x'"):
        parse({"PYPICACHE_UPSTREAMS": "a=http://a.example/", "PYPICACHE_CHANGELOGS": "x=none"})


def test_upstreams_in_priority_order_and_the_first_one_is_followed():
    settings = parse(
        {
            "PYPICACHE_UPSTREAMS": "main=http://a.example/simple/\n"
            "  torch=https://b.example/whl/cpu  local=file:///srv/tree/",
            "PYPICACHE_ROUTES": "torch=torch Torch_Vision=torch nvidia-*=torch",
        }
    )
    assert [u.name for u in settings.upstreams] == ["main", "torch", "local"]
    assert settings.upstreams[1].url == "https://b.example/whl/cpu/"
    assert settings.upstream_url == "http://a.example/simple/"
    assert settings.changelog_url == "http://a.example/pypi"
    assert settings.routes == (
        Route("torch", "torch"),
        Route("torch-vision", "torch"),
        Route("nvidia-*", "torch"),
    )
    assert route_for(settings.routes, "nvidia-cublas-cu12") == "torch"
    assert route_for(settings.routes, "torchaudio") is None


def test_naming_both_an_upstream_url_and_upstreams_is_an_error_naming_both():
    with pytest.raises(SettingsError) as error:
        parse(
            {"PYPICACHE_UPSTREAMS": "a=http://a.example/"},
            {"pypicache.upstream_url": "http://b.example/"},
        )
    assert "pypicache.upstreams" in str(error.value)
    assert "pypicache.upstream_url" in str(error.value)


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("PYPICACHE_UPSTREAMS", "http://a.example/", "NAME=URL"),
        ("PYPICACHE_UPSTREAMS", "Main=http://a.example/", "NAME=URL"),
        ("PYPICACHE_UPSTREAMS", "-a=http://a.example/", "NAME=URL"),
        ("PYPICACHE_UPSTREAMS", "a=ftp://a.example/", "http(s)://"),
        ("PYPICACHE_UPSTREAMS", "a=none", "http(s)://"),
        ("PYPICACHE_UPSTREAMS", "a=http://u:p@a.example/", "credentials"),
        ("PYPICACHE_UPSTREAMS", "a=http://a.example/ a=http://b.example/", "named twice"),
        ("PYPICACHE_ROUTES", "torch=nosuch", "no upstream is named 'nosuch'"),
        ("PYPICACHE_ROUTES", "torch", "PATTERN=UPSTREAM"),
        ("PYPICACHE_ROUTES", "to/rch=pypi", "PATTERN=UPSTREAM"),
    ],
)
def test_bad_upstreams_and_routes_are_refused_with_the_reason(key, value, phrase):
    with pytest.raises(SettingsError) as error:
        parse({key: value})
    assert phrase in str(error.value)


@given(st.lists(NAMES, min_size=1, max_size=5, unique=True))
def test_any_list_of_named_urls_is_read_back_in_its_order(names):
    text = "\n".join(f"{name}=http://{name}.example/simple/" for name in names)
    settings = parse({"PYPICACHE_UPSTREAMS": text})
    assert [(u.name, u.url) for u in settings.upstreams] == [
        (name, f"http://{name}.example/simple/") for name in names
    ]


TEXT = st.text(string.printable, max_size=60)


@given(TEXT, TEXT, TEXT, TEXT)
def test_whatever_is_written_is_read_or_refused_with_a_settings_error(
    upstreams, routes, changelogs, merge
):
    try:
        settings = parse(
            {
                "PYPICACHE_UPSTREAMS": upstreams,
                "PYPICACHE_ROUTES": routes,
                "PYPICACHE_CHANGELOGS": changelogs,
                "PYPICACHE_MERGE": merge,
            }
        )
    except SettingsError:
        return
    assert all(normalize_pattern(pattern) == pattern for pattern in settings.merge)
    names = [u.name for u in settings.upstreams]
    assert len(names) == len(set(names)) >= 1
    assert all(route.upstream in names for route in settings.routes)
