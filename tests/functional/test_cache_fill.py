"""Filling the cache from the upstream: once per key, streamed, verified, and outage-proof."""

from __future__ import annotations

import hashlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import event

from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import wait_cached
from tests.support.dists import make_wheel, noise
from tests.support.fakeupstream import FakeUpstream
from tests.support.waiting import wait_until

UV_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.01"


def page(http: requests.Session, index: RunningIndex, name: str) -> requests.Response:
    return http.get(f"{index.simple_url}{name}/", headers={"Accept": UV_ACCEPT}, timeout=30)


def file_url(index: RunningIndex, project: str, filename: str) -> str:
    return f"{index.url}/packages/{project}/{filename}"


def stored_blobs(index: RunningIndex) -> list[Path]:
    return [p for p in index.settings.blob_dir.rglob("*") if p.is_file()]


def temp_files(index: RunningIndex) -> list[Path]:
    return list(index.settings.tmp_dir.iterdir())


def test_a_fresh_page_is_served_without_asking_the_upstream(index, upstream, http):
    upstream.publish(make_wheel("fresh", "1.0"))
    for _ in range(5):
        assert page(http, index, "fresh").status_code == 200
    assert upstream.count(path_prefix="/simple/fresh/") == 1


def test_an_expired_page_is_revalidated_with_a_conditional_request(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    upstream.publish(make_wheel("reval", "1.0"))
    first = page(http, index, "reval")
    second = page(http, index, "reval")
    assert second.content == first.content
    requests_seen = upstream.find(path_prefix="/simple/reval/")
    assert len(requests_seen) == 2
    assert "If-None-Match" not in requests_seen[0].headers
    assert requests_seen[1].headers["If-None-Match"]

    upstream.publish(make_wheel("reval", "2.0"))
    third = page(http, index, "reval").json()
    assert third["versions"] == ["1.0", "2.0"]
    # This index's own serial moved on with the change, as its changelog says.
    assert third["meta"]["_last-serial"] > first.json()["meta"]["_last-serial"]


def test_long_upstream_etags_still_make_conditional_requests(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    upstream.long_etags = True
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    upstream.publish(make_wheel("longtag", "1.0"))
    first = page(http, index, "longtag")
    second = page(http, index, "longtag")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    revalidation = upstream.find(path_prefix="/simple/longtag/")[1]
    assert len(revalidation.headers["If-None-Match"]) > 300


def test_a_replaced_file_is_refetched_with_its_new_hash(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    wheel = make_wheel("mutable", "1.0")
    upstream.publish(wheel)
    url = file_url(index, "mutable", wheel.filename)
    assert http.get(url, timeout=10).content == wheel.content
    new_bytes = make_wheel("mutable", "1.0", extra_files={"extra.txt": b"new"}).content
    upstream.replace_bytes(wheel.filename, new_bytes)
    data = page(http, index, "mutable").json()
    assert data["files"][0]["hashes"]["sha256"] == hashlib.sha256(new_bytes).hexdigest()
    assert http.get(url, timeout=10).content == new_bytes


def test_a_project_deleted_upstream_stops_being_served(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    upstream.publish(make_wheel("doomed", "1.0"))
    assert page(http, index, "doomed").status_code == 200
    upstream.delete_project("doomed")
    assert page(http, index, "doomed").status_code == 404


def test_concurrent_misses_for_a_page_make_one_upstream_request(index, upstream, http):
    upstream.publish(make_wheel("popular", "1.0"))
    upstream.stall("/simple/popular/")

    def fetch(_: int) -> int:
        with requests.Session() as session:
            return page(session, index, "popular").status_code

    with ThreadPoolExecutor(16) as pool:
        results = [pool.submit(fetch, i) for i in range(16)]
        assert upstream.wait_stalled(1)
        upstream.release()
        assert [r.result(timeout=30) for r in results] == [200] * 16
    assert upstream.count(path_prefix="/simple/popular/") == 1


def test_sixteen_concurrent_downloads_make_one_upstream_fetch(index, upstream, http):
    wheel = make_wheel("popular", "1.0", extra_files={"data.bin": noise(1_000_000)})
    upstream.publish(wheel)
    assert page(http, index, "popular").status_code == 200
    upstream.stall("/packages/")
    url = file_url(index, "popular", wheel.filename)

    def download(_: int) -> bytes:
        with requests.Session() as session:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            return response.content

    with ThreadPoolExecutor(16) as pool:
        results = [pool.submit(download, i) for i in range(16)]
        assert upstream.wait_stalled(1)
        upstream.release()
        bodies = [r.result(timeout=30) for r in results]
    assert all(body == wheel.content for body in bodies)
    assert upstream.count(path_contains=wheel.filename) == 1
    assert wait_until(lambda: [p.name for p in stored_blobs(index)] == [wheel.sha256])


def test_a_miss_is_streamed_before_the_upstream_has_finished(index, upstream, http):
    wheel = make_wheel("big", "1.0", extra_files={"data.bin": noise(2_000_000)})
    upstream.publish(wheel)
    assert page(http, index, "big").status_code == 200
    upstream.throttle_bytes_per_second = wheel.size / 2  # about two seconds for the whole file
    with http.get(file_url(index, "big", wheel.filename), stream=True, timeout=30) as response:
        assert response.headers["Content-Length"] == str(wheel.size)
        first = next(response.iter_content(1024))
        assert first == wheel.content[:1024]
        # The client has bytes while the file is not yet complete (nor stored).
        assert stored_blobs(index) == []
        rest = b"".join(response.iter_content(65536))
    assert first + rest == wheel.content


def test_a_hash_mismatch_aborts_the_client_and_stores_nothing(index, upstream, http):
    wheel = make_wheel("tampered", "1.0", extra_files={"data.bin": noise(200_000)})
    upstream.publish(wheel)
    assert page(http, index, "tampered").status_code == 200
    upstream.wrong_bytes(wheel.filename)
    # Slow enough that the client is streaming before the upstream body is complete.
    upstream.throttle_bytes_per_second = 1_000_000
    url = file_url(index, "tampered", wheel.filename)
    received = bytearray()

    def download() -> None:
        with http.get(url, stream=True, timeout=30) as response:
            assert response.status_code == 200
            for chunk in response.iter_content(65536):
                received.extend(chunk)

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        download()
    assert len(received) < wheel.size, "the client never gets a complete-looking wrong file"
    assert stored_blobs(index) == []
    assert temp_files(index) == []

    upstream.reset_faults()
    assert http.get(url, timeout=30).content == wheel.content
    assert wait_until(lambda: [p.name for p in stored_blobs(index)] == [wheel.sha256])


def test_a_truncated_upstream_download_stores_nothing(index, upstream, http):
    wheel = make_wheel("cut", "1.0", extra_files={"data.bin": noise(200_000)})
    upstream.publish(wheel)
    assert page(http, index, "cut").status_code == 200
    upstream.truncate(wheel.filename, at=50_000)
    with pytest.raises(requests.exceptions.RequestException):
        http.get(file_url(index, "cut", wheel.filename), timeout=30).raise_for_status()
    assert stored_blobs(index) == []
    assert temp_files(index) == []


def test_metadata_with_a_wrong_hash_is_refused(index, upstream, http):
    wheel = make_wheel("badmeta", "1.0")
    upstream.publish(wheel)
    assert page(http, index, "badmeta").status_code == 200
    upstream.wrong_bytes(wheel.filename + ".metadata", b"Metadata-Version: 2.1\nName: evil\n")
    response = http.get(file_url(index, "badmeta", wheel.filename) + ".metadata", timeout=30)
    assert response.status_code == 502
    assert stored_blobs(index) == []


def test_upstream_outage_serves_cached_pages_and_files(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    wheel = make_wheel("sturdy", "1.0")
    upstream.publish(wheel)
    upstream.publish(make_wheel("never-cached", "1.0"))
    fresh = page(http, index, "sturdy")
    url = file_url(index, "sturdy", wheel.filename)
    assert http.get(url, timeout=10).content == wheel.content

    upstream.stop()
    stale = page(http, index, "sturdy")
    assert stale.status_code == 200
    assert stale.content == fresh.content
    assert "no-store" in stale.headers["Cache-Control"]
    assert http.get(url, timeout=10).content == wheel.content

    missing = page(http, index, "never-cached")
    assert missing.status_code == 502
    assert "upstream" in missing.text

    upstream.start()
    assert page(http, index, "never-cached").status_code == 200


def test_upstream_errors_on_an_uncached_page_are_502(index, upstream, http):
    upstream.publish(make_wheel("flaky", "1.0"))
    upstream.fail_next("/simple/flaky/", 503, times=10)
    response = page(http, index, "flaky")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/plain")


def test_upstream_timeouts_on_an_uncached_page_are_504(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(
        upstream.simple_url,
        **{"pypicache.upstream_timeout": "0.5", "pypicache.upstream_retries": "0"},
    )
    upstream.publish(make_wheel("slow", "1.0"))
    upstream.stall("/simple/slow/")
    response = page(http, index, "slow")
    assert response.status_code == 504
    assert "timed out" in response.text


def test_uncached_file_while_the_upstream_is_down_is_502(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url)
    wheel = make_wheel("halfway", "1.0")
    upstream.publish(wheel)
    assert page(http, index, "halfway").status_code == 200
    upstream.down = True
    response = http.get(file_url(index, "halfway", wheel.filename), timeout=30)
    assert response.status_code == 502
    assert stored_blobs(index) == []


def test_a_file_url_upstream_is_served(make_index: IndexFactory, tmp_path: Path, http):
    tree = tmp_path / "tree"
    plain = make_wheel("plain-dir", "1.0")
    (tree / "plain-dir").mkdir(parents=True)
    plain.write(tree / "plain-dir")
    listed = make_wheel("With.Index", "2.0", requires_python=">=3.9")
    (tree / "with-index").mkdir()
    listed.write(tree / "with-index")
    (tree / "with-index" / "index.html").write_text(
        "<!DOCTYPE html><html><body>"
        f'<a href="{listed.filename}#sha256={listed.sha256}" '
        f'data-requires-python="&gt;=3.9">{listed.filename}</a>'
        "</body></html>"
    )
    index = make_index(tree.as_uri() + "/")

    data = page(http, index, "plain-dir").json()
    assert data["files"][0]["hashes"] == {"sha256": plain.sha256}
    assert data["files"][0]["size"] == plain.size
    assert http.get(file_url(index, "plain-dir", plain.filename), timeout=10).content == (
        plain.content
    )
    data = page(http, index, "with-index").json()
    assert data["files"][0]["requires-python"] == ">=3.9"
    assert http.get(file_url(index, "with-index", listed.filename), timeout=10).content == (
        listed.content
    )
    assert page(http, index, "absent").status_code == 404
    listing = http.get(index.simple_url, timeout=10).text
    assert 'href="plain-dir/"' in listing
    assert 'href="with-index/"' in listing


def test_no_upstream_serves_only_the_cache(make_index: IndexFactory, upstream, http):
    wheel = make_wheel("kept", "1.0")
    upstream.publish(wheel)
    online = make_index(upstream.simple_url, name="online")
    assert page(http, online, "kept").status_code == 200
    online.stop()
    # The same data directory and database, now with no upstream at all.
    offline = make_index(
        None,
        name="offline-view",
        **{
            "pypicache.data_dir": str(online.settings.data_dir),
            "sqlalchemy.url": online.settings.database_url,
        },
    )
    assert page(http, offline, "kept").status_code == 200
    assert page(http, offline, "other").status_code == 404
    response = http.get(file_url(offline, "kept", wheel.filename), timeout=10)
    assert response.status_code == 502, "known but never downloaded, and nowhere to get it"


def test_stopping_the_app_ends_running_fills(index, upstream, http):
    wheel = make_wheel("endless", "1.0", extra_files={"data.bin": noise(500_000)})
    upstream.publish(wheel)
    assert page(http, index, "endless").status_code == 200
    upstream.throttle_bytes_per_second = 50_000
    done = threading.Event()

    def download() -> None:
        try:
            with requests.get(file_url(index, "endless", wheel.filename), timeout=30) as r:
                r.content  # noqa: B018
        except requests.RequestException:
            pass
        finally:
            done.set()

    thread = threading.Thread(target=download)
    thread.start()
    assert wait_until(lambda: upstream.count(path_contains=wheel.filename) == 1)
    index.app.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fill:")]
    assert done.wait(30)
    thread.join()
    assert stored_blobs(index) == []


PRIVATE_NAMES = re.compile(r"SELECT projects\.name\s+FROM projects\s+WHERE projects\.source = \S+$")


def test_pages_and_downloads_cost_the_same_queries_however_many_files(
    make_index: IndexFactory, upstream: FakeUpstream, http
):
    index = make_index(upstream.simple_url)
    wheels = {
        name: [make_wheel(name, f"1.{n}") for n in range(count)]
        for name, count in (("few", 3), ("many", 30))
    }
    for dist in [*wheels["few"], *wheels["many"]]:
        upstream.publish(dist)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # Reads and updates; new rows are the ORM's to batch (one INSERT on PostgreSQL,
        # in-process calls on SQLite).
        if statement.startswith("INSERT") or PRIVATE_NAMES.match(statement):
            return  # the private names are read every few seconds, whatever is asked
        if re.search(r"\b(projects|files)\b", statement):
            statements.append(statement)

    def cost(url: str, filled: str | None = None, **headers: str) -> int:
        """The statements of a request, and of the fill of ``filled`` it started (which
        records the file once the client has its bytes)."""
        statements.clear()
        assert http.get(url, headers=headers, timeout=30).status_code == 200
        if filled is not None:
            wait_cached(index, filled)
        return len(statements)

    event.listen(index.app.services.database.engine, "before_cursor_execute", record)
    try:
        pages = [cost(f"{index.simple_url}{name}/", Accept=UV_ACCEPT) for name in wheels]
        cold = [
            cost(file_url(index, name, dists[0].filename), dists[0].filename)
            for name, dists in wheels.items()
        ]
        warm = [cost(file_url(index, name, dists[0].filename)) for name, dists in wheels.items()]
        fresh = cost(f"{index.simple_url}many/", Accept=UV_ACCEPT)
    finally:
        event.remove(index.app.services.database.engine, "before_cursor_execute", record)
    assert pages[0] == pages[1] > 0, "a query per file"
    assert cold[0] == cold[1] > 0
    assert warm == [0, 0], "a cached file is served without the database"
    assert fresh == 0, "a fresh page is served from memory"
