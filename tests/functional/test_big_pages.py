"""Pages of PyPI's biggest size (11,000 files) are stored, refreshed and read back exactly.

The page store writes a big page as a few statements of many rows, and a refresh
writes only the rows that changed: these tests check that what it writes is the page,
through the HTTP API, after every kind of change one file or release can see.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import create_engine, make_url, text

from pypicache.cache.index import PAGE_WRITERS, WRITE_AFTER_FILES
from tests.conftest import IndexFactory, RunningIndex
from tests.support.dists import Dist
from tests.support.fakeupstream import FakeUpstream

JSON = "application/vnd.pypi.simple.v1+json"
PROJECT = "big-project"
RELEASES = 275
WHEELS = 39  # per release, besides the sdist: 40 files a release, 11,000 in all
TAGS = [f"cp3{minor}-cp3{minor}-plat{n}" for minor in range(8, 14) for n in range(7)]


def _dist(filename: str, version: str, wheel: bool, project: str = PROJECT) -> Dist:
    # Tiny, distinct contents: the pages are under test here, not the bytes.
    metadata = f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n\n".encode()
    return Dist(
        filename=filename,
        content=f"contents of {filename}".encode(),
        metadata=metadata if wheel else None,
        name=project,
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
    stored = response.json()
    # Served before its write gave the name a serial, the first page has none; the
    # stored one has this index's serial, and is otherwise the same.
    assert "_last-serial" not in served["meta"]
    assert stored["meta"].pop("_last-serial") >= 1
    assert stored == served


@contextlib.contextmanager
def writes_held(database_url: str) -> Iterator[None]:
    """Another client of the database holds off every write to the files table meanwhile."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(url.set(drivername="postgresql+psycopg"))
    try:
        with engine.begin() as connection:
            connection.execute(text("LOCK TABLE files IN SHARE MODE"))
            yield
    finally:
        engine.dispose()


def test_a_big_page_asked_for_while_its_first_rows_are_written_shows_the_upstream_now(
    index, make_index, big, http
):
    """The first request gets its page although the database takes no writes yet; the
    next (this index revalidates every time) waits for the rows, then shows the page
    as the upstream has it now, and that page is what the database holds."""
    path = f"/simple/{PROJECT}/"
    big.stall(path)
    answers: list[dict] = []
    first = threading.Thread(target=lambda: answers.append(page(http, index)))
    first.start()
    second = threading.Thread(target=lambda: answers.append(page(http, index)))
    try:
        assert big.wait_stalled(), "the first request never reached the upstream"
        with writes_held(index.settings.database_url):
            big.release()
            first.join(30)
            assert len(answers) == 1, "the first page waited for the database"
            added = big.publish(_dist(f"big_project-1.{RELEASES}.tar.gz", f"1.{RELEASES}", False))
            second.start()
    finally:
        big.release()
        first.join(30)
    second.join(60)
    assert len(answers) == 2, "the second request was not answered once writes went on"
    assert added.filename not in listed(answers[0])
    assert listed(answers[1]) == upstream_listing(big)
    other = make_index(None, name="reader", **{"sqlalchemy.url": index.settings.database_url})
    response = http.get(f"{other.simple_url}{PROJECT}/", headers={"Accept": JSON}, timeout=60)
    assert response.json() == answers[1]


def test_big_first_pages_waiting_for_a_busy_database_are_answered_once_it_frees(
    make_index, upstream, http
):
    """More big first pages than there are page writers, fetched while the database
    takes no writes: each is served at once, and asked for again, each is answered
    as soon as the database takes writes again (a request never waits on a write
    that waits on it)."""
    names = [f"wide-{n}" for n in range(PAGE_WRITERS + 1)]
    for name in names:
        for n in range(WRITE_AFTER_FILES):
            filename = f"{name.replace('-', '_')}-1.{n}.tar.gz"
            upstream.publish(_dist(filename, f"1.{n}", False, project=name))
    # A long upstream wait: a request that waited for a write waiting for it would hang
    # well past the joins below, not only for the tests' usual few seconds.
    settings = {"pypicache.page_ttl": "0", "pypicache.upstream_timeout": "60"}
    index = make_index(upstream.simple_url, **settings)
    for name in names:
        upstream.stall(f"/simple/{name}/")
    firsts = {name: _page_in_thread(http, index, name) for name in names}
    try:
        assert upstream.wait_stalled(len(names)), "the first requests never reached upstream"
        with writes_held(index.settings.database_url):
            upstream.release()
            for name, (thread, _) in firsts.items():
                thread.join(30)
                assert not thread.is_alive(), f"the first page of {name} waited for writes"
            again = {name: _page_in_thread(http, index, name) for name in names}
    finally:
        upstream.release()
    for name, (thread, answers) in again.items():
        thread.join(60)
        assert answers, f"{name} was not answered again"
        assert answers[0]["name"] == name
        assert len(answers[0]["files"]) == WRITE_AFTER_FILES


def _page_in_thread(
    http: requests.Session, index: RunningIndex, name: str
) -> tuple[threading.Thread, list[dict]]:
    answers: list[dict] = []

    def get() -> None:
        response = http.get(f"{index.simple_url}{name}/", headers={"Accept": JSON}, timeout=90)
        if response.status_code == 200:
            answers.append(response.json())

    thread = threading.Thread(target=get)
    thread.start()
    return thread, answers


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
    head = requests.head(url, headers={"Accept": JSON, "Accept-Encoding": "identity"}, timeout=60)
    assert head.status_code == 200
    assert (head.headers["Content-Length"], head.content) == (str(len(identity)), b"")

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
    # A big page is kept encoded only: a client that takes no gzip still gets the same
    # bytes under the same ETag.
    assert refused.raw.read() == identity
    assert refused.headers["ETag"] == plain.headers["ETag"]
    revalidated = raw_get(url, Accept=JSON, **{"If-None-Match": plain.headers["ETag"]})
    assert revalidated.status_code == 304


def test_a_page_revalidated_unchanged_shows_what_another_process_stored_meanwhile(
    make_index, upstream, http
):
    """A 304 leaves a process's page in memory only while the database holds that page."""
    upstream.publish(_dist("small-1.0.tar.gz", "1.0", False, project="small"))
    first = make_index(upstream.simple_url, name="first", **{"pypicache.page_ttl": "0"})
    shared = {"sqlalchemy.url": first.settings.database_url, "pypicache.page_ttl": "0"}
    second = make_index(upstream.simple_url, name="second", **shared)

    def filenames(index: RunningIndex) -> set[str]:
        response = http.get(f"{index.simple_url}small/", headers={"Accept": JSON}, timeout=30)
        assert response.status_code == 200, response.text[:300]
        return {f["filename"] for f in response.json()["files"]}

    assert filenames(first) == {"small-1.0.tar.gz"}
    assert filenames(first) == {"small-1.0.tar.gz"}  # revalidated, unchanged
    upstream.publish(_dist("small-1.1.tar.gz", "1.1", False, project="small"))
    both = {"small-1.0.tar.gz", "small-1.1.tar.gz"}
    assert filenames(second) == both  # stored by the other process, with its ETag
    # The first process revalidates with the ETag the other stored, and the upstream
    # answers 304: the page it shows is the database's, not the one it rendered before.
    upstream.clear_log()
    assert filenames(first) == both
    (asked,) = upstream.find("GET", "/simple/small/")
    assert asked.headers.get("If-None-Match")
