"""The simple API as pip and uv see it: every item of the standards' quick list."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
import requests

from tests.support.dists import make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
UPLOADED = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def demo(upstream: FakeUpstream) -> FakeUpstream:
    """A project with a wheel (with metadata), an sdist, a yanked release and requires-python."""
    upstream.publish(make_wheel("Demo.Pkg", "1.0", requires_python=">=3.8"), upload_time=UPLOADED)
    upstream.publish(make_sdist("Demo.Pkg", "1.0"), upload_time=UPLOADED)
    upstream.publish(make_wheel("Demo.Pkg", "2.0"))
    upstream.yank("demo-pkg", "2.0", reason='broken <"&"> build')
    upstream.publish(make_wheel("Demo.Pkg", "3.0"))
    upstream.yank("demo-pkg", "3.0")
    return upstream


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.metas: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        if tag == "meta":
            values = dict(attrs)
            self.metas[values.get("name") or ""] = values.get("content")


def anchors(body: str) -> Anchors:
    parser = Anchors()
    parser.feed(body)
    return parser


def get(http: requests.Session, url: str, accept: str | None = None, **headers: str):
    if accept is not None:
        headers["Accept"] = accept
    return http.get(url, headers=headers, timeout=10, allow_redirects=False)


def test_unknown_project_is_404_with_a_short_text(index, upstream, http):
    response = get(http, index.simple_url + "does-not-exist/", UV_ACCEPT)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "does-not-exist" in response.text
    assert len(response.text) < 200
    # Negative caching: asking again does not ask the upstream again right away.
    assert get(http, index.simple_url + "does-not-exist/").status_code == 404
    assert upstream.count(path_prefix="/simple/does-not-exist/") == 1


@pytest.mark.parametrize("path", ["-foo/", "foo-/", "..%2f/", "a%0a/", "foo%20bar/"])
def test_invalid_names_are_404_without_asking_the_upstream(index, upstream, http, path):
    assert get(http, index.simple_url + path).status_code == 404
    assert upstream.count(path_prefix="/simple/") == 0


@pytest.mark.parametrize(
    "spelling", ["Demo.Pkg", "demo_pkg", "DEMO-PKG", "demo--pkg", "dEmO-._.-PkG"]
)
def test_non_normalized_names_redirect_permanently(index, demo, http, spelling):
    response = get(http, index.simple_url + spelling + "/")
    assert response.status_code == 301
    assert response.headers["Location"].endswith("/simple/demo-pkg/")


def test_missing_trailing_slash_redirects(index, demo, http):
    response = get(http, index.simple_url + "demo-pkg")
    assert response.status_code == 301
    assert response.headers["Location"].endswith("/simple/demo-pkg/")
    response = get(http, index.url + "/simple")
    assert response.status_code == 301
    assert response.headers["Location"].endswith("/simple/")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (PIP_ACCEPT, JSON),
        (UV_ACCEPT, JSON),
        (f"{JSON}, */*;q=0.1", JSON),
        (f"{V1_HTML};q=0.2, {JSON}, text/html;q=0.01", JSON),
        # pypi-simple's ACCEPT_ANY: a tie at q=1 goes to JSON, the most expressive format.
        (f"{JSON}, {V1_HTML}, text/html;q=0.01", JSON),
        (f"{V1_HTML}", V1_HTML),
        ("text/*", "text/html"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", V1_HTML),
    ],
)
def test_content_negotiation(index, demo, http, accept, expected):
    response = get(http, index.simple_url + "demo-pkg/", accept)
    assert response.status_code == 200
    content_type = response.headers["Content-Type"]
    assert content_type.split(";")[0] == expected
    assert content_type == content_type.lower()
    assert response.headers["Vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize("accept", [f"{JSON};q=0", "application/json", "*/*;q=0", "image/png"])
def test_nothing_acceptable_is_406(index, demo, http, accept):
    assert get(http, index.simple_url + "demo-pkg/", accept).status_code == 406
    assert get(http, index.simple_url, accept).status_code == 406


def test_post_to_a_simple_url_is_405(index, demo, http):
    response = http.post(index.simple_url + "demo-pkg/", data=b"x", timeout=10)
    assert response.status_code == 405
    assert http.post(index.simple_url, data=b"x", timeout=10).status_code == 405


def test_html_page_carries_upstream_facts_and_points_at_this_server(index, demo, http):
    response = get(http, index.simple_url + "demo-pkg/", "text/html")
    body = response.text
    assert body.startswith("<!DOCTYPE html>")
    page = anchors(body)
    assert page.metas["pypi:repository-version"] == "1.3"
    by_name = {a["href"].split("#")[0].rsplit("/", 1)[1]: a for a in page.anchors}
    wheel1 = make_wheel("Demo.Pkg", "1.0", requires_python=">=3.8")
    sdist = make_sdist("Demo.Pkg", "1.0")
    assert set(by_name) == {
        wheel1.filename,
        sdist.filename,
        make_wheel("Demo.Pkg", "2.0").filename,
        make_wheel("Demo.Pkg", "3.0").filename,
    }
    for anchor in page.anchors:
        href = anchor["href"]
        assert not href.startswith("http"), "file links must point at this server"
        url = requests.compat.urljoin(response.url, href)
        assert url.startswith(index.url + "/packages/demo-pkg/")
        assert re.search(r"#sha256=[0-9a-f]{64}$", href)
    assert by_name[wheel1.filename]["href"].endswith("#sha256=" + wheel1.sha256)
    assert by_name[wheel1.filename]["data-requires-python"] == ">=3.8"
    assert 'data-requires-python="&gt;=3.8"' in body
    assert by_name[wheel1.filename]["data-core-metadata"] == "sha256=" + wheel1.metadata_sha256
    assert by_name[wheel1.filename]["data-dist-info-metadata"] == (
        "sha256=" + wheel1.metadata_sha256
    )
    # No metadata: the attribute is absent, never "false".
    assert "data-core-metadata" not in by_name[sdist.filename]
    assert "data-yanked" not in by_name[wheel1.filename]
    yanked_with_reason = by_name[make_wheel("Demo.Pkg", "2.0").filename]
    assert yanked_with_reason["data-yanked"] == 'broken <"&"> build'
    # Yanked without a reason: data-yanked="" — never the bare attribute.
    assert by_name[make_wheel("Demo.Pkg", "3.0").filename]["data-yanked"] == ""
    assert "data-yanked " not in body
    assert "data-yanked>" not in body
    assert re.search(r"<!--SERIAL [1-9][0-9]*-->", body), "this index's own serial"


def test_json_page_follows_pep_691_and_700(index, demo, http):
    response = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT)
    data = response.json()
    assert data["meta"]["api-version"] == "1.3"
    assert data["name"] == "demo-pkg"
    assert data["versions"] == ["1.0", "2.0", "3.0"]
    files = {f["filename"]: f for f in data["files"]}
    wheel1 = make_wheel("Demo.Pkg", "1.0", requires_python=">=3.8")
    sdist = make_sdist("Demo.Pkg", "1.0")
    for entry in data["files"]:
        assert entry["hashes"]["sha256"] == demo.file(entry["filename"]).sha256
        assert isinstance(entry["size"], int)
        assert entry["upload-time"].endswith("Z")
        if "yanked" in entry:
            assert entry["yanked"] not in ("", None, False)
        assert "dist-info-metadata" not in entry
        assert not entry["url"].startswith("http")
    assert files[wheel1.filename]["size"] == wheel1.size
    assert files[wheel1.filename]["upload-time"] == "2024-05-17T12:30:45.123456Z"
    assert files[wheel1.filename]["requires-python"] == ">=3.8"
    assert files[wheel1.filename]["core-metadata"] == {"sha256": wheel1.metadata_sha256}
    assert "core-metadata" not in files[sdist.filename]
    assert "yanked" not in files[wheel1.filename]
    assert files[make_wheel("Demo.Pkg", "2.0").filename]["yanked"] == 'broken <"&"> build'
    assert files[make_wheel("Demo.Pkg", "3.0").filename]["yanked"] is True
    assert data["meta"]["_last-serial"] >= 1  # this index's serial space, not the upstream's


def test_pages_are_deterministic_with_strong_etags_and_304(index, demo, http):
    first = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT)
    html = get(http, index.simple_url + "demo-pkg/", "text/html")
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert html.headers["ETag"] != etag, "each representation has its own validator"
    again = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT)
    assert again.content == first.content
    assert again.headers["ETag"] == etag

    not_modified = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT, **{"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    for header in ("ETag", "Vary", "Cache-Control", "X-PyPI-Last-Serial"):
        assert not_modified.headers[header] == first.headers[header]
    # The HTML validator does not validate the JSON representation.
    other = get(
        http, index.simple_url + "demo-pkg/", UV_ACCEPT, **{"If-None-Match": html.headers["ETag"]}
    )
    assert other.status_code == 200


def test_pages_carry_this_indexs_serial_and_cache_control(index, demo, http):
    response = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT)
    serial = int(response.headers["X-PyPI-Last-Serial"])
    assert response.json()["meta"]["_last-serial"] == serial
    assert response.headers["Cache-Control"] == "max-age=60, public"


def test_a_serial_of_its_own_even_where_the_upstream_gives_none(index, upstream, http):
    upstream.omit_serial = True
    upstream.html_only = True
    upstream.publish(make_wheel("quiet", "1.0"))
    response = get(http, index.simple_url + "quiet/", UV_ACCEPT)
    assert response.status_code == 200
    assert int(response.headers["X-PyPI-Last-Serial"]) >= 1
    assert response.json()["meta"]["_last-serial"] == int(response.headers["X-PyPI-Last-Serial"])


def test_html_only_upstream_is_understood(index, upstream, http):
    upstream.html_only = True
    wheel = make_wheel("old-style", "1.0", requires_python="<4,>=3.7")
    upstream.publish(wheel)
    data = get(http, index.simple_url + "old-style/", UV_ACCEPT).json()
    (entry,) = data["files"]
    assert entry["hashes"] == {"sha256": wheel.sha256}
    assert entry["requires-python"] == "<4,>=3.7"
    assert entry["core-metadata"] == {"sha256": wheel.metadata_sha256}


def test_advertised_metadata_exists_and_matches_its_hash(index, demo, http):
    data = get(http, index.simple_url + "demo-pkg/", UV_ACCEPT).json()
    base = index.simple_url + "demo-pkg/"
    checked = 0
    for entry in data["files"]:
        if "core-metadata" not in entry:
            continue
        url = requests.compat.urljoin(base, entry["url"]) + ".metadata"
        response = http.get(url, timeout=10)
        assert response.status_code == 200
        assert "Content-Encoding" not in response.headers
        assert hashlib.sha256(response.content).hexdigest() == entry["core-metadata"]["sha256"]
        checked += 1
    assert checked == 3
    sdist = make_sdist("Demo.Pkg", "1.0")
    missing = http.get(f"{index.url}/packages/demo-pkg/{sdist.filename}.metadata", timeout=10)
    assert missing.status_code == 404


def test_files_support_head_ranges_and_validators(index, demo, http):
    sdist = make_sdist("Demo.Pkg", "1.0")
    url = f"{index.url}/packages/demo-pkg/{sdist.filename}"

    head = http.head(url, timeout=10)  # before the file is cached: announced, not fetched
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(sdist.size)
    assert head.headers["Accept-Ranges"] == "bytes"
    assert demo.count(path_contains=sdist.filename) == 0

    full = http.get(url, timeout=10, headers={"Accept-Encoding": "gzip"})
    assert full.status_code == 200
    assert full.content == sdist.content
    assert "Content-Encoding" not in full.headers, "a .tar.gz is not gzip-encoded content"
    assert full.headers["Content-Type"] == "application/octet-stream"
    assert full.headers["Content-Length"] == str(sdist.size)

    head = http.head(url, timeout=10)  # now from the store
    assert head.headers["Content-Length"] == str(sdist.size)
    assert head.headers["Accept-Ranges"] == "bytes"
    etag = head.headers["ETag"]
    assert etag == f'"sha256:{sdist.sha256}"'
    assert "immutable" in head.headers["Cache-Control"]

    part = http.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206
    assert part.content == sdist.content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{sdist.size}"
    assert part.headers["Content-Length"] == "10"

    tail = http.get(url, headers={"Range": "bytes=-5"}, timeout=10)
    assert tail.status_code == 206
    assert tail.content == sdist.content[-5:]
    whole = http.get(url, headers={"Range": f"bytes=-{sdist.size + 100}"}, timeout=10)
    assert whole.status_code == 206
    assert whole.content == sdist.content
    resumed = http.get(url, headers={"Range": "bytes=100-", "If-Range": etag}, timeout=10)
    assert resumed.status_code == 206
    assert resumed.content == sdist.content[100:]
    changed = http.get(url, headers={"Range": "bytes=100-", "If-Range": '"other"'}, timeout=10)
    assert changed.status_code == 200
    assert changed.content == sdist.content

    beyond = http.get(url, headers={"Range": f"bytes={sdist.size}-"}, timeout=10)
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{sdist.size}"

    assert http.get(url, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    assert demo.count(path_contains=sdist.filename) == 1


def test_unknown_file_of_a_known_project_is_404(index, demo, http):
    response = http.get(f"{index.url}/packages/demo-pkg/demo_pkg-9.9.tar.gz", timeout=10)
    assert response.status_code == 404


def test_project_list_merges_the_upstream_list_and_cached_projects(index, demo, http):
    demo.add_bulk_projects(50)
    get(http, index.simple_url + "demo-pkg/")  # cached here: it has a serial of this index's
    html = get(http, index.simple_url, "text/html")
    assert html.status_code == 200
    page = anchors(html.text)
    assert page.metas["pypi:repository-version"] == "1.3"
    hrefs = [a["href"] for a in page.anchors]
    assert "demo-pkg/" in hrefs
    assert "bulkproj0/" in hrefs
    assert len(hrefs) == len(set(hrefs)) == 51

    data = get(http, index.simple_url, UV_ACCEPT).json()
    assert data["meta"]["api-version"] == "1.3"
    assert len(data["projects"]) == 51
    listed = {p["name"]: p["_last-serial"] for p in data["projects"]}
    # Each name with this index's serial: cached here, or 0 for names only listed upstream.
    assert listed["Demo.Pkg"] >= 1
    assert listed["bulkproj0"] == 0
    assert data["meta"]["_last-serial"] == max(listed.values())

    etag = html.headers["ETag"]
    assert get(http, index.simple_url, "text/html", **{"If-None-Match": etag}).status_code == 304
    assert html.headers["Vary"] == "Accept, Accept-Encoding"
    # Every listed name resolves.
    for href in hrefs[:3]:
        assert get(http, index.simple_url + href).status_code == 200


def test_project_list_without_upstream_lists_what_is_cached(make_index, demo, http):
    first = make_index(demo.simple_url, name="first")
    get(http, first.simple_url + "demo-pkg/")
    data = get(http, first.simple_url, UV_ACCEPT).json()
    assert [p["name"] for p in data["projects"]] == ["Demo.Pkg"]


def test_health(index, http):
    response = http.get(index.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.text == "ok\n"
