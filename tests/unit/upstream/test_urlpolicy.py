"""The URL policy: which file URLs from an upstream page, and which peer addresses, are used."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.errors import SettingsError
from pypicache.settings import Settings
from pypicache.upstream.urlpolicy import (
    URLPolicy,
    URLRefused,
    is_forbidden,
    parse_networks,
    redirect_target,
)

FORBIDDEN_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
FORBIDDEN_V6 = ("::/128", "::1/128", "fe80::/10", "fc00::/7", "fec0::/10", "ff00::/8")
# Large, long-assigned public blocks (no special-purpose range inside them).
PUBLIC = ("8.0.0.0/9", "1.1.1.0/24", "151.101.0.0/16", "2001:4860::/32", "2a00:1450::/32")

forbidden_v4 = st.sampled_from(FORBIDDEN_V4).flatmap(lambda net: st.ip_addresses(network=net))
forbidden_v6 = st.sampled_from(FORBIDDEN_V6).flatmap(lambda net: st.ip_addresses(network=net))
forbidden = st.one_of(
    forbidden_v4,
    forbidden_v6,
    forbidden_v4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),  # IPv4-mapped
    forbidden_v4.map(lambda a: ipaddress.IPv6Address(f"64:ff9b::{a}")),  # NAT64
    forbidden_v4.map(lambda a: ipaddress.IPv6Address((0x2002 << 112) | (int(a) << 80))),  # 6to4
)
public = st.sampled_from(PUBLIC).flatmap(lambda net: st.ip_addresses(network=net))

POLICY = URLPolicy("https://mirror.example.org/simple/")


@given(forbidden)
def test_every_forbidden_address_is_refused(address):
    assert is_forbidden(address)
    assert not POLICY.address_allowed(address)
    assert not POLICY.address_allowed(str(address))


@given(public)
def test_public_addresses_are_allowed(address):
    assert not is_forbidden(address)
    assert POLICY.address_allowed(address)
    if address.version == 4:
        assert POLICY.address_allowed(ipaddress.IPv6Address(f"::ffff:{address}"))


@given(
    st.sampled_from(FORBIDDEN_V4 + FORBIDDEN_V6).flatmap(
        lambda net: st.tuples(st.just(ipaddress.ip_network(net)), st.ip_addresses(network=net))
    )
)
def test_allowlisted_networks_are_allowed(case):
    network, address = case
    policy = URLPolicy("https://mirror.example.org/simple/", [network])
    assert policy.address_allowed(address)
    if address.version == 4:
        assert policy.address_allowed(ipaddress.IPv6Address(f"::ffff:{address}"))


def test_an_allowlist_allows_only_its_own_network():
    policy = URLPolicy("https://mirror.example.org/simple/", parse_networks("10.0.0.0/8"))
    assert policy.address_allowed("10.1.2.3")
    assert policy.address_allowed("10.0.0.0")
    assert not policy.address_allowed("192.168.1.1")
    assert not policy.address_allowed("127.0.0.1")


@given(st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), max_size=5), st.data())
def test_parse_networks_reads_whitespace_separated_cidrs(addresses, data):
    networks = [
        ipaddress.ip_network(f"{a}/{data.draw(st.integers(0, a.max_prefixlen))}", strict=False)
        for a in addresses
    ]
    separator = data.draw(st.sampled_from([" ", "\t", "\n", "  \n "]))
    assert parse_networks(separator.join(str(n) for n in networks)) == tuple(networks)


def _is_network(word: str) -> bool:
    try:
        ipaddress.ip_network(word, strict=False)
    except ValueError:
        return False
    return True


@given(st.text())
def test_parse_networks_accepts_cidrs_or_raises_value_error(text):
    words = text.split()
    if all(_is_network(word) for word in words):
        assert len(parse_networks(text)) == len(words)
    else:
        with pytest.raises(ValueError, match="not a network"):
            parse_networks(text)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "example.org", "10.0.0.0/8,fd00::/8"])
def test_a_bad_allowed_networks_setting_names_the_setting(value):
    with pytest.raises(SettingsError, match=r"^pypicache.upstream_allowed_networks: "):
        Settings.from_mapping({"pypicache.upstream_allowed_networks": value}, environ={})
    environ = {"PYPICACHE_UPSTREAM_ALLOWED_NETWORKS": value}
    with pytest.raises(SettingsError, match=r"^pypicache.upstream_allowed_networks: "):
        Settings.from_mapping({}, environ=environ)


def test_the_allowed_networks_setting():
    assert Settings.from_mapping({}, environ={}).upstream_allowed_networks == ()
    environ = {"PYPICACHE_UPSTREAM_ALLOWED_NETWORKS": " 10.0.0.0/8\tfd00::/8 "}
    settings = Settings.from_mapping({}, environ=environ)
    assert settings.upstream_allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://mirror.example.org/x.whl",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "/relative/x.whl",
        "http:///x.whl",
        "http://user:secret@mirror.example.org/x.whl",
        "http://mirror.example.org:99999/x.whl",
        "http://[::1/x.whl",
    ],
)
def test_urls_of_other_forms_are_refused_by_an_http_upstream(url):
    with pytest.raises(URLRefused, match=r"^upstream file URL refused: "):
        POLICY.check_url(url)


def test_http_urls_pass_the_form_check():
    assert POLICY.check_url("https://files.example.org/x.whl") is None
    assert POLICY.check_url("http://10.0.0.1/x.whl") is None  # addresses: at connect time


@given(st.text())
def test_check_url_returns_or_refuses_for_any_text(text):
    try:
        result = POLICY.check_url(text)
    except URLRefused:
        return
    assert result is None


@given(st.text(), st.text())
def test_redirect_target_joins_or_refuses(base, location):
    try:
        target = redirect_target("https://mirror.example.org/" + base, location)
    except URLRefused:
        return
    assert "#" not in target


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "::ffff:127.0.0.1", "localhost", "::1"]
)
def test_loopback_in_any_spelling_is_refused_at_connect_time(host):
    with pytest.raises(URLRefused, match="upstream_allowed_networks"):
        POLICY.connect_addresses("http", host, 8080)


def test_the_upstreams_own_origin_may_be_anywhere():
    policy = URLPolicy("http://127.0.0.1:8080/simple/")
    assert policy.connect_addresses("http", "127.0.0.1", 8080)
    for scheme, host, port in [("https", "127.0.0.1", 8080), ("http", "127.0.0.1", 8081)]:
        with pytest.raises(URLRefused):
            policy.connect_addresses(scheme, host, port)
    assert URLPolicy("http://[::1]/simple/").is_upstream("http", "::1", 80)


def test_an_allowlisted_loopback_may_be_connected_to():
    policy = URLPolicy("http://mirror.example.org/simple/", parse_networks("127.0.0.0/8"))
    addresses = policy.connect_addresses("http", "2130706433", 8080)
    assert [sa[0] for *_, sa in addresses] == ["127.0.0.1"]


def test_file_urls_only_under_a_file_upstreams_root(tmp_path: Path):
    root = tmp_path / "simple"
    (root / "demo").mkdir(parents=True)
    inside = root / "demo" / "demo-1.0.tar.gz"
    inside.write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (root / "demo" / "link.tar.gz").symlink_to(outside)
    policy = URLPolicy(root.as_uri() + "/")
    assert policy.check_url(inside.as_uri()) == inside.resolve()
    for url in [
        "file:///etc/passwd",
        outside.as_uri(),
        f"{root.as_uri()}/demo/../../secret.txt",
        f"{root.as_uri()}/demo/%2e%2e/%2e%2e/secret.txt",
        (root / "demo" / "link.tar.gz").as_uri(),
        f"file://otherhost{inside}",
        f"file://{inside}\x00.tar.gz",
    ]:
        with pytest.raises(URLRefused):
            policy.check_url(url)
    with pytest.raises(URLRefused, match="only http"):
        policy.check_url("gopher://127.0.0.1/")
