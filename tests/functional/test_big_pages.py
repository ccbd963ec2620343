"""Pages of PyPI's biggest size (11,000 files) are stored, refreshed and read back exactly.

The page store writes a big page as a few statements of many rows, and a refresh
writes only the rows that changed: these tests check that what it writes is the page,
through the HTTP API, after every kind of change one file or release can see.
"""

from __future__ import annotations

import gzip
import hashlib

import pytest
import requests

from tests.conftest import IndexFactory, RunningIndex
from tests.support.dists import Dist
from tests.support.fakeupstream import FakeUpstream

JSON = "application/vnd.pypi.simple.v1+json"
PROJECT = "big-project"
RELEASES = 275
WHEELS = 39  # per release, besides the sdist: 40 files a release, 11,000 in all
TAGS = [f"cp3{minor}-cp3{minor}-plat{n}" for minor in range(8, 14) for n in range(7)]


def _dist(filename: str, version: str, wheel: bool) -> Dist:
    # Tiny, distinct contents: the pages are under test here, not the bytes.
    metadata = f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version}\n\n".encode()
    return Dist(
        filename=filename,
        content=f"contents of {filename}".encode(),
        metadata=metadata if wheel else None,
        name=PROJECT,
        version=version,
    )


@pytest.fixture
def big(upstream: FakeUpstream) -> FakeUpstream:
    for release in range(RELEASES):
        version = f"1.{release}"
        upstream.publish(_dist(f"big_project-{version}.tar.gz", version, False))
        for tag in TAGS[:WHEELS]:
            upstream.publish(_dist(f"big_project-{version}-{tag}.whl", version, True))
    return upstream


@pytest.fixture
def index(make_index: IndexFactory, big: FakeUpstream) -> RunningIndex:
    """Revalidates on every request, so each request sees the upstream's latest page."""
    return make_index(big.simple_url, **{"pypicache.page_ttl": "0"})


def page(http: requests.Session, index: RunningIndex) -> dict:
    response = http.get(f"{index.simple_url}{PROJECT}/", headers={"Accept": JSON}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def listed(data: dict) -> dict[str, tuple[str | None, object]]:
    """filename -> (sha256, yanked) as the page says."""
    return {f["filename"]: (f["hashes"].get("sha256"), f.get("yanked")) for f in data["files"]}


def upstream_listing(upstream: FakeUpstream) -> dict[str, tuple[str | None, object]]:
    project = upstream.project(PROJECT)
    assert project is not None
    listing: dict[str, tuple[str | None, object]] = {}
    for release in project.releases.values():
        yanked = (release.yanked_reason or True) if release.yanked else None
        for record in release.files.values():
            listing[record.filename] = (record.sha256, yanked)
    return listing


def download(http: requests.Session, index: RunningIndex, filename: str) -> bytes:
    response = http.get(f"{index.url}/packages/{PROJECT}/{filename}", timeout=60)
    assert response.status_code == 200, response.text[:300]
    return response.content


def test_a_cold_big_page_lists_every_file_with_the_upstreams_facts(index, big, http):
    data = page(http, index)
    assert len(data["files"]) == RELEASES * (WHEELS + 1)
    assert listed(data) == upstream_listing(big)
    assert sorted(data["versions"]) == sorted(f"1.{n}" for n in range(RELEASES))
    wheel = next(f for f in data["files"] if f["filename"].endswith(".whl"))
    record = big.file(wheel["filename"])
    assert wheel["size"] == record.size
    assert wheel["core-metadata"] == {"sha256": record.metadata_sha256}


def test_a_big_first_page_served_before_its_rows_are_written_is_stored_all_the_same(
    index, make_index, http
):
    """The rows of a big first page are written after it is served, and never lost: a
    server stopping right after finishes them first."""
    served = page(http, index)
    index.stop()
    other = make_index(None, name="reader", **{"sqlalchemy.url": index.settings.database_url})
    response = http.get(f"{other.simple_url}{PROJECT}/", headers={"Accept": JSON}, timeout=60)
    assert response.json() == served


def test_one_change_among_eleven_thousand_files_shows_and_nothing_else_moves(
    index, big, make_index, http
):
    # The first request a download: it waits for the first page's rows to be written.
    replaced = f"big_project-1.7-{TAGS[3]}.whl"
    assert download(http, index, replaced) == f"contents of {replaced}".encode()
    before = page(http, index)

    added = big.publish(_dist(f"big_project-1.{RELEASES}.tar.gz", f"1.{RELEASES}", False))
    big.replace_bytes(replaced, b"the new bytes")
    big.yank(PROJECT, "1.20", reason="broken build")
    removed = f"big_project-1.30-{TAGS[0]}.whl"
    big.delete_file(removed)

    after = page(http, index)
    old, new = listed(before), listed(after)
    assert new == upstream_listing(big)
    changed = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    yanked = {name for name in new if big.file(name).version == "1.20"}
    assert changed == {added.filename, replaced, removed} | yanked
    assert hashlib.sha256(download(http, index, replaced)).hexdigest() == new[replaced][0]

    # What the database holds is that same page: another process renders the same bytes.
    other = make_index(None, name="reader", **{"sqlalchemy.url": index.settings.database_url})
    response = http.get(f"{other.simple_url}{PROJECT}/", headers={"Accept": JSON}, timeout=60)
    assert response.json() == after


def raw_get(url: str, **headers: str) -> requests.Response:
    """The response as sent: requests neither adds Accept-Encoding nor decodes."""
    with requests.Session() as session:
        session.headers.pop("Accept-Encoding")
        return session.get(url, headers=headers, timeout=60, stream=True)


@pytest.mark.parametrize("path", [f"{PROJECT}/", ""])
def test_big_pages_and_the_project_list_go_gzip_encoded_to_clients_that_take_it(index, big, path):
    big.add_bulk_projects(20_000)  # a project list of some size
    url = index.simple_url + path
    plain = raw_get(url, Accept=JSON)
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    identity = plain.raw.read()
    assert len(identity) == int(plain.headers["Content-Length"])

    encoded = raw_get(url, Accept=JSON, **{"Accept-Encoding": "gzip, deflate"})
    assert encoded.headers["Content-Encoding"] == "gzip"
    assert encoded.headers["Vary"] == "Accept, Accept-Encoding"
    body = encoded.raw.read(decode_content=False)
    assert len(body) == int(encoded.headers["Content-Length"])
    assert len(body) < len(identity) / 4
    assert gzip.decompress(body) == identity
    assert encoded.headers["ETag"] != plain.headers["ETag"]

    again = raw_get(
        url,
        Accept=JSON,
        **{"Accept-Encoding": "gzip", "If-None-Match": encoded.headers["ETag"]},
    )
    assert again.status_code == 304
    refused = raw_get(url, Accept=JSON, **{"Accept-Encoding": "gzip;q=0, *"})
    assert "Content-Encoding" not in refused.headers
