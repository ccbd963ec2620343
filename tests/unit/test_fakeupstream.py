"""The fake upstream index must itself behave like PyPI, or tests built on it prove nothing."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import io
import subprocess
import tarfile
import time
import xmlrpc.client
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pypi_simple
import pytest
import requests

from tests.support.clients import make_venv, pip_install, uv_pip_install
from tests.support.dists import make_large_wheel, make_sdist, make_wheel
from tests.support.fakeupstream import (
    FILE_CACHE_CONTROL,
    RATE_LIMIT_FAULT,
    SIMPLE_CACHE_CONTROL,
    TEXT_HTML,
    V1_HTML,
    V1_JSON,
    FakeUpstream,
    iter_journal_actions,
)

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
FIXED = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(clock=lambda: FIXED) as upstream:
        yield upstream
    assert upstream.errors == []


def get(url: str, **kwargs: object) -> requests.Response:
    """GET with the body read and the connection released (no ResourceWarning)."""
    with requests.get(url, timeout=10, **kwargs) as response:  # type: ignore[arg-type]
        _ = response.content
    return response


def head(url: str, **kwargs: object) -> requests.Response:
    with requests.head(url, timeout=10, **kwargs) as response:  # type: ignore[arg-type]
        return response


def project_page(fake: FakeUpstream, name: str, accept: str | None) -> pypi_simple.ProjectPage:
    response = get(fake.simple_url + name + "/", headers={"Accept": accept})
    assert response.status_code == 200
    return pypi_simple.ProjectPage.from_response(response, name)


# ---- dists ------------------------------------------------------------------------------------


def test_wheel_is_deterministic_and_self_consistent() -> None:
    args = {"requires_dist": ["b>=1", "c"], "requires_python": ">=3.8"}
    wheel = make_wheel("My.Pkg_name", "1.0-post1", **args)  # type: ignore[arg-type]
    assert wheel.sha256 == make_wheel("My.Pkg_name", "1.0-post1", **args).sha256  # type: ignore[arg-type]
    assert wheel.filename == "my_pkg_name-1.0.post1-py3-none-any.whl"
    assert wheel.size == len(wheel.content)
    with zipfile.ZipFile(io.BytesIO(wheel.content)) as archive:
        distinfo = "my_pkg_name-1.0.post1.dist-info"
        assert archive.read(f"{distinfo}/METADATA") == wheel.metadata
        assert b'__version__ = "1.0.post1"' in archive.read("my_pkg_name/__init__.py")
        for line in archive.read(f"{distinfo}/RECORD").decode().splitlines():
            path, digest, size = line.split(",")
            if path.endswith("RECORD"):
                continue
            data = archive.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode()
            assert int(size) == len(data)
    assert wheel.metadata is not None
    assert b"Requires-Dist: b>=1\nRequires-Dist: c\n" in wheel.metadata
    assert b"Requires-Python: >=3.8\n" in wheel.metadata
    assert wheel.metadata_sha256 == hashlib.sha256(wheel.metadata).hexdigest()


def test_build_tag_and_sdist(tmp_path: Path) -> None:
    assert make_wheel("a", "1", build_tag=2).filename == "a-1-2-py3-none-any.whl"
    sdist = make_sdist("My.Pkg", "2.0", requires_dist=["x"])
    assert sdist.filename == "my_pkg-2.0.tar.gz"
    assert sdist.sha256 == make_sdist("My.Pkg", "2.0", requires_dist=["x"]).sha256
    assert sdist.metadata is None
    assert sdist.metadata_sha256 is None
    with tarfile.open(fileobj=io.BytesIO(sdist.content)) as tar:
        names = tar.getnames()
        pyproject = tar.extractfile("my_pkg-2.0/pyproject.toml")
        assert pyproject is not None
        assert b"setuptools.build_meta" in pyproject.read()
    assert "my_pkg-2.0/PKG-INFO" in names
    assert sdist.write(tmp_path).read_bytes() == sdist.content


@pytest.mark.parametrize("size", [1200, 9999, 10_000, 3 * 1024 * 1024 + 7])
def test_large_wheel_has_exact_size(size: int) -> None:
    wheel = make_large_wheel("big", "1.0", size)
    assert wheel.size == size
    with zipfile.ZipFile(io.BytesIO(wheel.content)) as archive:
        assert archive.testzip() is None


# ---- simple pages -----------------------------------------------------------------------------


def test_html_detail_page_has_warehouse_shape(fake: FakeUpstream) -> None:
    wheel = make_wheel("Foo.Bar", "1.0", requires_python=">=3.8")
    sdist = make_sdist("Foo.Bar", "1.0")
    fake.publish(wheel, upload_time=FIXED)
    fake.publish(sdist)
    fake.publish(make_wheel("Foo.Bar", "0.9"))
    fake.yank("foo-bar", "0.9", 'broken <"&">')

    response = get(fake.simple_url + "foo-bar/")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Vary"] == "Accept"
    assert response.headers["Cache-Control"] == SIMPLE_CACHE_CONTROL
    assert response.headers["X-PyPI-Last-Serial"] == str(fake.serial)
    assert response.headers["ETag"].startswith('"')
    text = response.text
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta name="pypi:repository-version" content="1.1">' in text
    assert "<h1>Links for foo-bar</h1>" in text
    assert text.endswith(f"<!--SERIAL {fake.serial}-->")
    wheel_url = fake.file_url(wheel.filename)
    digest = f"sha256={wheel.metadata_sha256}"
    assert (
        f'<a href="{wheel_url}#sha256={wheel.sha256}" data-requires-python="&gt;=3.8" '
        f'data-dist-info-metadata="{digest}" data-core-metadata="{digest}">'
        f"{wheel.filename}</a><br />"
    ) in text
    assert f'<a href="{fake.file_url(sdist.filename)}#sha256={sdist.sha256}">' in text
    assert 'data-yanked="broken &lt;&quot;&amp;&quot;&gt;"' in text

    page = pypi_simple.ProjectPage.from_response(response, "foo-bar")
    assert page.repository_version == "1.1"
    assert page.last_serial == str(fake.serial)
    packages = {p.filename: p for p in page.packages}
    assert [p.filename for p in page.packages] == [
        "foo_bar-0.9-py3-none-any.whl",
        "foo_bar-1.0-py3-none-any.whl",
        "foo_bar-1.0.tar.gz",
    ]
    assert packages[wheel.filename].digests == {"sha256": wheel.sha256}
    assert packages[wheel.filename].requires_python == ">=3.8"
    assert packages[wheel.filename].metadata_digests == {"sha256": wheel.metadata_sha256}
    assert packages[sdist.filename].has_metadata is None
    assert packages["foo_bar-0.9-py3-none-any.whl"].yanked_reason == 'broken <"&">'
    assert not packages[wheel.filename].is_yanked


def test_json_detail_page(fake: FakeUpstream) -> None:
    wheel = make_wheel("Foo.Bar", "1.0", requires_python=">=3.8")
    fake.publish(wheel, upload_time=FIXED)
    fake.publish(make_sdist("Foo.Bar", "1.0"))
    fake.publish(make_wheel("Foo.Bar", "1.10"))
    fake.publish(make_wheel("Foo.Bar", "1.9"))
    fake.yank("foo-bar", "1.9")

    response = get(fake.simple_url + "foo-bar/", headers={"Accept": UV_ACCEPT})
    assert response.headers["Content-Type"] == V1_JSON
    data = response.json()
    assert data["meta"] == {"api-version": "1.1", "_last-serial": fake.serial}
    assert data["name"] == "foo-bar"
    assert data["versions"] == ["1.0", "1.9", "1.10"]
    assert [f["filename"] for f in data["files"]] == [
        "foo_bar-1.0-py3-none-any.whl",
        "foo_bar-1.0.tar.gz",
        "foo_bar-1.9-py3-none-any.whl",
        "foo_bar-1.10-py3-none-any.whl",
    ]
    first, sdist, yanked, _ = data["files"]
    assert first == {
        "filename": wheel.filename,
        "url": fake.file_url(wheel.filename),
        "hashes": {"sha256": wheel.sha256},
        "requires-python": ">=3.8",
        "size": wheel.size,
        "upload-time": "2024-01-02T03:04:05.678901Z",
        "yanked": False,
        "core-metadata": {"sha256": wheel.metadata_sha256},
        "data-dist-info-metadata": {"sha256": wheel.metadata_sha256},
        "provenance": None,
    }
    assert sdist["core-metadata"] is False
    assert sdist["requires-python"] is None
    assert yanked["yanked"] is True

    page = pypi_simple.ProjectPage.from_response(response, "foo-bar")
    assert page.versions == ["1.0", "1.9", "1.10"]
    assert page.packages[0].upload_time == FIXED
    assert page.packages[0].size == wheel.size


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT_HTML),
        ("*/*", TEXT_HTML),
        (PIP_ACCEPT, V1_JSON),
        (UV_ACCEPT, V1_JSON),
        ("application/vnd.pypi.simple.v1+json, */*;q=0.1", V1_JSON),
        # A tie at q=1 goes to the earlier offer, as on PyPI (WebOb).
        ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html", V1_HTML),
        ("text/*", TEXT_HTML),
        ("application/vnd.pypi.simple.v1+html", V1_HTML),
        # Nothing acceptable: PyPI answers text/html rather than 406.
        ("application/json", TEXT_HTML),
        ("application/vnd.pypi.simple.v1+json;q=0", TEXT_HTML),
    ],
)
def test_content_negotiation(fake: FakeUpstream, accept: str | None, expected: str) -> None:
    fake.publish(make_wheel("a", "1.0"))
    for url in (fake.simple_url, fake.simple_url + "a/"):
        response = get(url, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["Content-Type"].split(";")[0] == expected


def test_etag_per_representation_and_304(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    url = fake.simple_url + "a/"
    html_page = get(url)
    json_page = get(url, headers={"Accept": V1_JSON})
    assert html_page.headers["ETag"] != json_page.headers["ETag"]

    not_modified = get(url, headers={"If-None-Match": html_page.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    for header in ("ETag", "Vary", "X-PyPI-Last-Serial", "Cache-Control"):
        assert not_modified.headers[header] == html_page.headers[header]
    # The HTML validator does not validate the JSON representation.
    other = get(url, headers={"Accept": V1_JSON, "If-None-Match": html_page.headers["ETag"]})
    assert other.status_code == 200

    fake.publish(make_wheel("a", "2.0"))
    changed = get(url, headers={"If-None-Match": html_page.headers["ETag"]})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != html_page.headers["ETag"]


def test_redirects_and_404(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("Foo.Bar", "1.0"))
    for path, location in [
        ("/simple/Foo.Bar/", "/simple/foo-bar/"),
        ("/simple/FOO__bar/?x=1", "/simple/foo-bar/?x=1"),
        ("/simple/foo-bar", "/simple/foo-bar/"),
        ("/simple", "/simple/"),
    ]:
        response = get(fake.base_url + path, allow_redirects=False)
        assert response.status_code == 301, path
        assert response.headers["Location"] == location
    assert get(fake.simple_url + "Foo_Bar/").url == fake.simple_url + "foo-bar/"
    assert get(fake.simple_url + "nope/").status_code == 404
    assert get(fake.simple_url + "No.Pe/", allow_redirects=False).status_code == 404
    assert get(fake.base_url + "/elsewhere").status_code == 404
    with requests.post(fake.simple_url + "foo-bar/", timeout=10) as response:
        assert response.status_code == 405


def test_root_page(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("Foo.Bar", "1.0"))
    fake.publish(make_wheel("zed", "1.0"))
    html_root = get(fake.simple_url)
    assert html_root.headers["X-PyPI-Last-Serial"] == str(fake.serial)
    assert '<a href="/simple/foo-bar/">Foo.Bar</a>' in html_root.text
    assert '<meta name="pypi:repository-version" content="1.1">' in html_root.text
    json_root = get(fake.simple_url, headers={"Accept": V1_JSON}).json()
    assert json_root == {
        "meta": {"api-version": "1.1", "_last-serial": 8},
        "projects": [{"name": "Foo.Bar", "_last-serial": 4}, {"name": "zed", "_last-serial": 8}],
    }
    assert head(fake.simple_url).headers["Content-Length"] == str(len(html_root.content))


def test_bulk_projects_are_cheap_and_listed(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("real", "1.0"))
    started = time.monotonic()
    names = fake.add_bulk_projects(200_000)
    listing = get(fake.simple_url, headers={"Accept": V1_JSON})
    assert time.monotonic() - started < 10
    assert len(names) == 200_000
    assert len(listing.json()["projects"]) == 200_001
    assert fake.serial == 4 + 2 * 200_000

    started = time.monotonic()
    again = get(fake.simple_url, headers={"Accept": V1_JSON})
    assert time.monotonic() - started < 2  # rendered once, cached until the next mutation
    assert again.headers["ETag"] == listing.headers["ETag"]
    empty = get(fake.simple_url + names[-1] + "/", headers={"Accept": V1_JSON}).json()
    assert empty["files"] == []
    assert empty["versions"] == []

    fake.add_bulk_projects(1)
    assert (
        get(fake.simple_url, headers={"Accept": V1_JSON}).headers["ETag"] != again.headers["ETag"]
    )


# ---- journal and XML-RPC ----------------------------------------------------------------------


def test_journal_follows_warehouse(fake: FakeUpstream) -> None:
    wheel = make_wheel("Pkg", "1.0")
    fake.publish(wheel)
    fake.publish(make_sdist("Pkg", "1.0"))
    fake.publish(make_wheel("Pkg", "2.0"))
    fake.yank("pkg", "2.0", "oops")
    fake.unyank("pkg", "2.0")
    fake.delete_file("pkg-1.0.tar.gz")
    fake.delete_release("pkg", "2.0")
    fake.publish(make_wheel("Pkg", "3.0"), display_name="PKG")
    assert fake.project("pkg") is not None
    assert fake.project("pkg").last_serial == fake.serial  # type: ignore[union-attr]
    fake.delete_project("pkg")

    assert list(iter_journal_actions(fake, "pkg")) == [
        (None, "create"),
        (None, "add Owner admin"),
        ("1.0", "new release"),
        ("1.0", "add py3 file pkg-1.0-py3-none-any.whl"),
        ("1.0", "add source file pkg-1.0.tar.gz"),
        ("2.0", "new release"),
        ("2.0", "add py3 file pkg-2.0-py3-none-any.whl"),
        ("2.0", "yank release"),
        ("2.0", "unyank release"),
        ("1.0", "remove file pkg-1.0.tar.gz"),
        ("2.0", "remove release"),
        ("3.0", "new release"),
        ("3.0", "add py3 file pkg-3.0-py3-none-any.whl"),
        (None, "remove project"),
    ]
    journal = fake.journal
    assert [e.serial for e in journal] == list(range(1, 15))
    assert [e.name for e in journal][-3:] == ["PKG", "PKG", "PKG"]
    assert journal[0].timestamp == FIXED
    assert get(fake.simple_url + "pkg/").status_code == 404
    # PyPI never deletes blobs: the file of a deleted project still downloads.
    assert get(fake.base_url + wheel_path(fake, wheel.sha256)).content == wheel.content


def wheel_path(fake: FakeUpstream, sha256: str) -> str:
    return next(path for path, blob in fake._blobs.items() if blob.etag == f'"{sha256}"')


def test_filename_reuse_is_refused(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0")
    fake.publish(wheel)
    with pytest.raises(ValueError, match="already uploaded"):
        fake.publish(wheel)
    fake.delete_file(wheel.filename)
    with pytest.raises(ValueError, match="already uploaded"):
        fake.publish(wheel)


def test_changelog_paging(fake: FakeUpstream) -> None:
    for name in ("a", "b", "c"):
        fake.publish(make_wheel(name, "1.0"))
    fake.changelog_page_size = 5
    with xmlrpc.client.ServerProxy(fake.xmlrpc_url, allow_none=True) as proxy:
        assert proxy.changelog_last_serial() == 12
        pages = []
        since = 0
        while True:
            rows = proxy.changelog_since_serial(since)
            if not rows:
                break
            pages.append(len(rows))
            since = rows[-1][4]
        assert pages == [5, 5, 2]
        first = proxy.changelog_since_serial(0)[0]
        assert first == ["a", None, int(FIXED.timestamp()), "create", 1]
        assert proxy.changelog_since_serial(3)[0] == [
            "a",
            "1.0",
            int(FIXED.timestamp()),
            "add py3 file a-1.0-py3-none-any.whl",
            4,
        ]
        assert proxy.changelog_since_serial(12) == []
        assert proxy.list_packages_with_serial() == {"a": 4, "b": 8, "c": 12}
        with pytest.raises(xmlrpc.client.Fault) as fault:
            proxy.changelog_since_serial("3")
        assert fault.value.faultCode == -32602
        assert fault.value.faultString.startswith("client error;")
    assert fake.find(path_prefix="/pypi")[0].rpc_method == "changelog_last_serial"


def test_xmlrpc_transport_rules(fake: FakeUpstream) -> None:
    body = xmlrpc.client.dumps((), "changelog_last_serial").encode()
    for path in ("/pypi", "/pypi/", "/RPC2"):
        with requests.post(
            fake.base_url + path, data=body, headers={"Content-Type": "text/xml"}, timeout=10
        ) as response:
            assert response.status_code == 200
            assert xmlrpc.client.loads(response.content)[0] == (0,)
    with requests.post(
        fake.xmlrpc_url, data=body, headers={"Content-Type": "application/xml"}, timeout=10
    ) as response:
        assert response.status_code == 404
    assert get(fake.xmlrpc_url).status_code == 404


def test_xmlrpc_fault_knob(fake: FakeUpstream) -> None:
    fake.xmlrpc_fault = RATE_LIMIT_FAULT
    with xmlrpc.client.ServerProxy(fake.xmlrpc_url) as proxy:
        with pytest.raises(xmlrpc.client.Fault) as fault:
            proxy.changelog_last_serial()
        assert fault.value.faultCode == -32500
        assert "Limit may reset in 1 seconds." in fault.value.faultString
        fake.xmlrpc_fault = None
        assert proxy.changelog_last_serial() == 0


# ---- files ------------------------------------------------------------------------------------


def test_file_and_metadata_serving(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0")
    record = fake.publish(wheel)
    url = fake.file_url(wheel.filename)
    b2 = hashlib.blake2b(wheel.content, digest_size=32).hexdigest()
    assert record.path == f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{wheel.filename}"

    response = get(url)
    assert response.content == wheel.content
    assert response.headers["Content-Length"] == str(wheel.size)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Cache-Control"] == FILE_CACHE_CONTROL
    assert response.headers["ETag"] == f'"{wheel.sha256}"'
    assert "Last-Modified" in response.headers
    assert "X-PyPI-Last-Serial" not in response.headers
    assert "Content-Encoding" not in response.headers

    head_response = head(url)
    assert head_response.status_code == 200
    assert head_response.headers["Content-Length"] == str(wheel.size)
    assert get(url + ".metadata").content == wheel.metadata
    assert get(url, headers={"If-None-Match": f'"{wheel.sha256}"'}).status_code == 304
    assert get(url + "x").status_code == 404


def test_range_requests(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0")
    fake.publish(wheel)
    url = fake.file_url(wheel.filename)
    size = wheel.size

    partial = get(url, headers={"Range": "bytes=10-19"})
    assert partial.status_code == 206
    assert partial.content == wheel.content[10:20]
    assert partial.headers["Content-Range"] == f"bytes 10-19/{size}"
    assert partial.headers["Content-Length"] == "10"

    tail = get(url, headers={"Range": "bytes=100-"})
    assert tail.status_code == 206
    assert tail.content == wheel.content[100:]
    clipped = get(url, headers={"Range": f"bytes=100-{size * 2}"})
    assert clipped.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"

    unsatisfiable = get(url, headers={"Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{size}"
    # Like PyPI's CDN: no suffix ranges, no multi-ranges; the whole file comes back.
    for ignored in ("bytes=-10", "bytes=0-1,5-6"):
        whole = get(url, headers={"Range": ignored})
        assert whole.status_code == 200
        assert whole.content == wheel.content
    stale_validator = get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale_validator.status_code == 200
    fresh_validator = get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{wheel.sha256}"'})
    assert fresh_validator.status_code == 206


def test_replace_bytes(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0")
    fake.publish(wheel)
    old_url = fake.file_url(wheel.filename)
    other = make_wheel("a", "1.0", extra_files={"a/data.txt": b"new"})
    new = fake.replace_bytes(wheel.filename, other.content)
    assert new.sha256 == other.sha256
    assert new.metadata == other.metadata
    assert fake.file_url(wheel.filename) != old_url
    assert get(fake.file_url(wheel.filename)).content == other.content
    assert get(old_url).content == wheel.content
    listing = get(fake.simple_url + "a/", headers={"Accept": V1_JSON}).json()
    assert listing["files"][0]["hashes"]["sha256"] == other.sha256
    assert list(iter_journal_actions(fake, "a"))[-2:] == [
        ("1.0", f"remove file {wheel.filename}"),
        ("1.0", f"add py3 file {wheel.filename}"),
    ]


def test_publish_file_and_load_directory(fake: FakeUpstream, tmp_path: Path) -> None:
    wheel = make_wheel("Some.Thing", "2.0", requires_python=">=3.9")
    sdist = make_sdist("Some.Thing", "2.0")
    wheel.write(tmp_path)
    sdist.write(tmp_path)
    (tmp_path / "README.txt").write_text("ignored")
    records = fake.load_directory(tmp_path)
    assert [r.filename for r in records] == [wheel.filename, sdist.filename]
    assert records[0].metadata == wheel.metadata
    assert records[0].requires_python == ">=3.9"
    assert records[1].pyversion == "source"
    assert fake.project("some-thing").name == "Some.Thing"  # type: ignore[union-attr]

    cp_wheel = "native-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"
    fake.publish_file(cp_wheel, make_wheel("native", "1.0").content)
    assert list(iter_journal_actions(fake, "native"))[-1] == ("1.0", f"add cp312 file {cp_wheel}")


# ---- fault knobs ------------------------------------------------------------------------------


def test_fail_next(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    fake.fail_next("/simple/a/", 503, times=2, headers={"Retry-After": "1"})
    first = get(fake.simple_url + "a/")
    assert first.status_code == 503
    assert first.headers["Retry-After"] == "1"
    assert get(fake.simple_url).status_code == 200  # other paths are unaffected
    assert get(fake.simple_url + "a/").status_code == 503
    assert get(fake.simple_url + "a/").status_code == 200
    fake.fail_next("/packages/", 404)
    assert get(fake.file_url("a-1.0-py3-none-any.whl")).status_code == 404
    assert get(fake.file_url("a-1.0-py3-none-any.whl")).status_code == 200


def test_down_and_restart_on_same_port(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    fake.down = True
    assert get(fake.simple_url + "a/").status_code == 503
    with (
        xmlrpc.client.ServerProxy(fake.xmlrpc_url) as proxy,
        pytest.raises(xmlrpc.client.ProtocolError),
    ):
        proxy.changelog_last_serial()
    fake.down = False

    url = fake.simple_url + "a/"
    with requests.Session() as session:
        with session.get(url, timeout=10) as response:
            assert response.status_code == 200  # leaves a pooled keep-alive connection
        fake.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(url, timeout=10)
        fake.start()
        with session.get(url, timeout=10) as response:
            assert response.status_code == 200
    assert fake.base_url in url


def test_stall_and_release_with_many_connections(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    fake.stall("/simple/a/")
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(get, fake.simple_url + "a/") for _ in range(20)]
        assert fake.wait_stalled(20, timeout=10)
        assert get(fake.simple_url).status_code == 200  # not stalled
        assert not any(f.done() for f in futures)
        fake.release()
        assert [f.result(timeout=10).status_code for f in futures] == [200] * 20
    assert fake.stalled == 0


def test_stall_for_seconds(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    fake.stall("/simple/a/", seconds=0.3)
    started = time.monotonic()
    assert get(fake.simple_url + "a/").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_stop_releases_stalled_requests() -> None:
    upstream = FakeUpstream().start()
    upstream.publish(make_wheel("a", "1.0"))
    upstream.stall("/simple/")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        future = pool.submit(get, upstream.simple_url + "a/")
        assert upstream.wait_stalled(1)
        started = time.monotonic()
        upstream.stop()
        assert time.monotonic() - started < 5
        concurrent.futures.wait([future], timeout=10)
        assert future.done()


def test_wrong_bytes(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0")
    fake.publish(wheel)
    fake.wrong_bytes(wheel.filename)
    served = get(fake.file_url(wheel.filename)).content
    assert len(served) == wheel.size
    assert hashlib.sha256(served).hexdigest() != wheel.sha256
    fake.wrong_bytes(wheel.filename + ".metadata", b"Name: other\n")
    assert get(fake.file_url(wheel.filename) + ".metadata").content == b"Name: other\n"
    fake.reset_faults()
    assert get(fake.file_url(wheel.filename)).content == wheel.content


def test_truncate(fake: FakeUpstream) -> None:
    wheel = make_wheel("a", "1.0", extra_files={"a/big.txt": b"x" * 5000})
    fake.publish(wheel)
    fake.truncate(wheel.filename, 100)
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        connection.request("GET", fake.file(wheel.filename).path)
        response = connection.getresponse()
        assert response.getheader("Content-Length") == str(wheel.size)
        with pytest.raises(http.client.IncompleteRead) as short:
            response.read()
        assert len(short.value.partial) == 100
    finally:
        connection.close()


def test_throttle_paces_file_bodies(fake: FakeUpstream) -> None:
    record = fake.large_file("big", "1.0", 2_000_000)
    assert record.size == 2_000_000
    fake.throttle_bytes_per_second = 8_000_000
    started = time.monotonic()
    body = get(fake.file_url(record.filename)).content
    elapsed = time.monotonic() - started
    assert hashlib.sha256(body).hexdigest() == record.sha256
    assert 0.2 <= elapsed < 1.5
    started = time.monotonic()
    get(fake.simple_url + "big/")  # pages are never paced
    assert time.monotonic() - started < 0.2


def test_html_only_and_omit_serial(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    fake.html_only = True
    fake.omit_serial = True
    response = get(fake.simple_url + "a/", headers={"Accept": PIP_ACCEPT})
    assert response.headers["Content-Type"] == V1_HTML
    assert (
        get(fake.simple_url + "a/", headers={"Accept": V1_JSON})
        .headers["Content-Type"]
        .startswith(TEXT_HTML)
    )
    assert "X-PyPI-Last-Serial" not in response.headers
    assert "X-PyPI-Last-Serial" not in get(fake.simple_url).headers


def test_stale_mode_freezes_pages_but_not_the_changelog(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    before = get(fake.simple_url + "a/", headers={"Accept": V1_JSON})
    fake.stale("a")
    fake.stale("b")  # unknown now: stays a 404 after it is published
    fake.publish(make_wheel("a", "2.0"))
    fake.publish(make_wheel("b", "1.0"))

    during = get(fake.simple_url + "a/", headers={"Accept": V1_JSON})
    assert during.content == before.content
    assert during.headers["ETag"] == before.headers["ETag"]
    assert during.headers["X-PyPI-Last-Serial"] == "4"
    assert get(fake.simple_url + "b/").status_code == 404
    with xmlrpc.client.ServerProxy(fake.xmlrpc_url, allow_none=True) as proxy:
        assert proxy.changelog_last_serial() == 10
        assert proxy.changelog_since_serial(4)[0][3] == "new release"

    fake.stale("a", on=False)
    fake.stale("b", on=False)
    after = get(fake.simple_url + "a/", headers={"Accept": V1_JSON})
    assert after.json()["versions"] == ["1.0", "2.0"]
    assert after.headers["X-PyPI-Last-Serial"] == "6"
    assert get(fake.simple_url + "b/").status_code == 200


def test_request_log(fake: FakeUpstream) -> None:
    fake.publish(make_wheel("a", "1.0"))
    get(fake.simple_url + "a/?x=1", headers={"Accept": V1_JSON})
    head(fake.file_url("a-1.0-py3-none-any.whl"))
    assert fake.count() == 2
    assert fake.count(method="GET", path_prefix="/simple/a/") == 1
    assert fake.count(path_contains="?x=1") == 1
    assert fake.count(method="HEAD", path_prefix="/packages/") == 1
    record = fake.find(path_prefix="/simple/")[0]
    assert record.headers["accept"] == V1_JSON
    assert record.path == "/simple/a/?x=1"
    fake.clear_log()
    assert fake.count() == 0


# ---- the fake is a real index ------------------------------------------------------------------


def test_pip_and_uv_install_from_the_fake(fake: FakeUpstream, tmp_path: Path) -> None:
    fake.publish(make_wheel("A", "1.0", requires_dist=["b>=1", "C"]))
    fake.publish(make_sdist("A", "1.0"))
    fake.publish(make_wheel("b", "1.0", requires_python=">=3.8"))
    fake.publish(make_wheel("b", "2.0", requires_python=">=99"))  # never installable
    fake.publish(make_wheel("c", "1.0"))
    fake.publish(make_wheel("c", "2.0"))
    fake.yank("c", "2.0", "broken")
    check = "import a, b, c; print(a.__version__, b.__version__, c.__version__)"

    for installer, name in ((pip_install, "pip"), (uv_pip_install, "uv")):
        fake.clear_log()
        python = make_venv(tmp_path / name)
        result = installer(python, fake.simple_url, "a")
        assert result.returncode == 0, result.stdout + result.stderr
        versions = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, check=True
        )
        assert versions.stdout.split() == ["1.0", "1.0", "1.0"], name
        assert fake.count(path_prefix="/simple/a/") >= 1
        assert fake.count(method="GET", path_contains=".whl.metadata") >= 3, name
        assert fake.count(method="GET", path_contains=".tar.gz") == 0
