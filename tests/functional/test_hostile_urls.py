"""File URLs on a hostile upstream's pages lead nowhere the upstream should not send us (SSRF)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import IndexFactory, RunningIndex
from tests.support.hostile import Answer, HostileUpstream

PASSWD = Path("/etc/passwd")
WHEEL = "evil-1.0-py3-none-any.whl"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


@pytest.fixture
def internal() -> Iterator[HostileUpstream]:
    """A second loopback server: the internal service a page must not make us reach."""
    with HostileUpstream() as server:
        server.set("/x.whl", Answer(body=b"internal secrets"))
        yield server


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def offer(hostile: HostileUpstream, url: str, digest: str, **extra: object) -> None:
    hostile.json_page(
        "evil", [{"filename": WHEEL, "url": url, "hashes": {"sha256": digest}, **extra}]
    )


def download(index: RunningIndex, filename: str = WHEEL) -> requests.Response:
    page = requests.get(f"{index.simple_url}evil/", headers={"Accept": JSON_ACCEPT}, timeout=30)
    assert page.status_code == 200, page.text
    return requests.get(f"{index.url}/packages/evil/{filename}", timeout=30)


def refused_count(index: RunningIndex, kind: str = "file") -> float:
    text = requests.get(index.url + "/metrics", timeout=10).text
    pattern = rf'^pypicache_upstream_errors_total\{{kind="{kind}",reason="refused"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def stored_blobs(index: RunningIndex) -> list[Path]:
    return [p for p in index.settings.blob_dir.rglob("*") if p.is_file()]


def assert_refused(index: RunningIndex, response: requests.Response, kind: str = "file") -> None:
    assert response.status_code == 502
    assert "upstream file URL refused: " in response.text
    assert refused_count(index, kind) >= 1
    assert stored_blobs(index) == []


def port(server: HostileUpstream) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/x.whl",
        "http://localhost:{port}/x.whl",
        "http://2130706433:{port}/x.whl",
        "http://0x7f.1:{port}/x.whl",
        "http://127.1:{port}/x.whl",
        "http://[::ffff:127.0.0.1]:{port}/x.whl",
        "http://[::1]:{port}/x.whl",
    ],
)
def test_a_link_to_another_loopback_port_is_refused(
    make_index: IndexFactory, hostile: HostileUpstream, internal: HostileUpstream, template: str
):
    offer(hostile, template.format(port=port(internal)), sha256(b"internal secrets"))
    index = make_index(hostile.simple_url)
    assert_refused(index, download(index))
    assert internal.requests == []


def test_a_file_url_to_etc_passwd_is_refused_even_with_its_right_hash(
    make_index: IndexFactory, hostile: HostileUpstream, caplog: pytest.LogCaptureFixture
):
    offer(hostile, PASSWD.as_uri(), sha256(PASSWD.read_bytes()))
    index = make_index(hostile.simple_url)
    assert_refused(index, download(index))
    assert any("upstream file URL refused" in r.getMessage() for r in caplog.records)


def test_core_metadata_urls_are_refused_too(
    make_index: IndexFactory, hostile: HostileUpstream, internal: HostileUpstream
):
    internal.set("/x.whl.metadata", Answer(body=b"Metadata-Version: 2.1\n"))
    metadata = {"sha256": sha256(b"Metadata-Version: 2.1\n")}
    offer(
        hostile,
        f"http://127.0.0.1:{port(internal)}/x.whl",
        sha256(b"internal secrets"),
        **{"core-metadata": metadata},
    )
    index = make_index(hostile.simple_url)
    assert_refused(index, download(index, WHEEL + ".metadata"), kind="metadata")
    assert internal.requests == []


@pytest.mark.parametrize("target", ["internal", "passwd"])
def test_a_redirect_from_the_upstreams_origin_is_checked_too(
    make_index: IndexFactory, hostile: HostileUpstream, internal: HostileUpstream, target: str
):
    location = internal.url + "/x.whl" if target == "internal" else PASSWD.as_uri()
    hostile.set("/files/evil.whl", Answer(302, {"Location": location}))
    offer(hostile, hostile.url + "/files/evil.whl", sha256(b"internal secrets"))
    index = make_index(hostile.simple_url)
    assert_refused(index, download(index))
    assert internal.requests == []
    assert hostile.count("/files/evil.whl") == 1


def test_an_allowed_network_may_be_reached(
    make_index: IndexFactory, hostile: HostileUpstream, internal: HostileUpstream
):
    hostile.set("/files/evil.whl", Answer(302, {"Location": internal.url + "/x.whl"}))
    offer(hostile, hostile.url + "/files/evil.whl", sha256(b"internal secrets"))
    index = make_index(
        hostile.simple_url, **{"pypicache.upstream_allowed_networks": "10.0.0.0/8 127.0.0.0/8"}
    )
    response = download(index)
    assert response.status_code == 200
    assert response.content == b"internal secrets"
    assert internal.count("/x.whl") == 1


def test_redirects_within_the_upstreams_origin_are_followed(
    make_index: IndexFactory, hostile: HostileUpstream
):
    body = b"a wheel, two hops away"
    hostile.set("/files/a.whl", Answer(302, {"Location": "/files/b.whl"}))
    hostile.set("/files/b.whl", Answer(301, {"Location": hostile.url + "/files/c.whl"}))
    hostile.set("/files/c.whl", Answer(body=body))
    offer(hostile, hostile.url + "/files/a.whl", sha256(body))
    index = make_index(hostile.simple_url)
    response = download(index)
    assert response.status_code == 200
    assert response.content == body


def test_a_redirect_loop_ends_in_a_502(make_index: IndexFactory, hostile: HostileUpstream):
    hostile.set("/files/loop.whl", Answer(302, {"Location": "/files/loop.whl"}))
    offer(hostile, hostile.url + "/files/loop.whl", sha256(b""))
    index = make_index(hostile.simple_url)
    response = download(index)
    assert response.status_code == 502
    assert "redirects" in response.text
    assert hostile.count("/files/loop.whl") == 6
    assert stored_blobs(index) == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A file:// upstream's root, with a secret next to (not under) it."""
    root = tmp_path / "tree" / "simple"
    (root / "evil").mkdir(parents=True)
    (tmp_path / "tree" / "secret.whl").write_bytes(b"secret next to the root")
    (root / "evil" / "evil-2.0-py3-none-any.whl").write_bytes(b"a local wheel")
    return root


def local_page(root: Path, *links: tuple[str, bytes]) -> None:
    anchors = "".join(
        f'<a href="{href}#sha256={sha256(data)}">{WHEEL}</a>\n' for href, data in links
    )
    (root / "evil" / "index.html").write_text(f"<html><body>{anchors}</body></html>")


@pytest.mark.parametrize("href", ["passwd", "dotdot", "symlink"])
def test_a_file_upstream_may_not_link_outside_its_root(
    make_index: IndexFactory, tree: Path, href: str
):
    secret = tree.parent / "secret.whl"
    if href == "passwd":
        local_page(tree, (PASSWD.as_uri(), PASSWD.read_bytes()))
    elif href == "dotdot":
        local_page(tree, ("../../secret.whl", secret.read_bytes()))
    else:
        (tree / "evil" / "link.whl").symlink_to(secret)
        local_page(tree, ("link.whl", secret.read_bytes()))
    index = make_index(tree.as_uri() + "/")
    assert_refused(index, download(index))


def test_a_file_upstream_serves_files_under_its_root(make_index: IndexFactory, tree: Path):
    wheel = tree / "evil" / "evil-2.0-py3-none-any.whl"
    local_page(tree, ("evil-2.0-py3-none-any.whl", wheel.read_bytes()))
    index = make_index(tree.as_uri() + "/")
    response = download(index)
    assert response.status_code == 200
    assert response.content == b"a local wheel"
