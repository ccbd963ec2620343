"""A full disk and a database that refuses writes: clear errors in bounded time, nothing corrupt."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, make_url

from pypicache.errors import StorageFull, StorageUnavailable
from pypicache.storage.local import LocalBlobStore, storage_error, write_all
from tests.conftest import IndexFactory
from tests.support.cachestate import IndexDb, blobs, upload_as_new_user
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.waiting import wait_until


def noise(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _mount(target: Path, size: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs, as root); grown with ``grow``, unmounted after the test."""
    target = tmp_path / "tiny"
    target.mkdir()
    try:
        _mount(target, "1m")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def grow(mount: Path, size: str) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(mount)], check=True, capture_output=True
    )


# -- the short-write loop and the read-back, on files we control ------------------------------


class Stingy(io.RawIOBase):
    """A file whose every write takes at most ``most`` bytes, like a nearly full disk's."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        taken = bytes(b[: self.most])
        self.data += taken
        return len(taken)


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700))
def test_short_writes_are_written_again_until_all_is_written(data, most):
    file = Stingy(most)
    write_all(file, data)
    assert bytes(file.data) == data


def test_a_write_that_takes_nothing_is_a_full_disk():
    with pytest.raises(OSError, match="stored no bytes") as caught:
        write_all(Stingy(0), b"abc")
    assert caught.value.errno == errno.ENOSPC
    assert isinstance(storage_error(caught.value, "writing"), StorageFull)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_space_errors_are_storage_full(code):
    assert isinstance(storage_error(OSError(code, "full"), "writing"), StorageFull)
    assert not isinstance(storage_error(OSError(errno.EIO, "io"), "x"), StorageFull)


def test_a_temp_file_cut_short_on_disk_is_never_published(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp")
    store.tmp.mkdir()
    writer = store.writer()
    data = noise(10_000)
    writer.write(data)
    with writer.temp_path.open("r+b") as handle:  # what the filesystem lost
        handle.truncate(5000)
    with pytest.raises(StorageUnavailable, match="holds 5000 bytes"):
        writer.commit(hashlib.sha256(data).hexdigest())
    assert not store.exists(hashlib.sha256(data).hexdigest())
    assert list(store.tmp.iterdir()) == []


# -- a full disk under the running index ------------------------------------------------------


def test_an_upload_bigger_than_the_free_space_is_507_and_leaves_nothing(
    make_index: IndexFactory, tiny_fs: Path
):
    index = make_index(None, **{"pypicache.data_dir": str(tiny_fs)})
    dist = make_wheel("huge", "1.0", extra_files={"data.bin": noise(2_000_000)})
    response = upload_as_new_user(index, dist, "alice", "secret-password")
    assert response.status_code == 507, response.text
    assert "Insufficient Storage" in response.reason
    assert blobs(index.settings) == set()
    assert list(index.settings.tmp_dir.iterdir()) == []
    assert requests.get(f"{index.simple_url}huge/", timeout=30).status_code == 404


def test_a_fill_bigger_than_the_free_space_fails_and_succeeds_once_there_is_room(
    make_index: IndexFactory, upstream: FakeUpstream, tiny_fs: Path
):
    index = make_index(upstream.simple_url, **{"pypicache.data_dir": str(tiny_fs)})
    dist = make_wheel("big", "1.0", extra_files={"data.bin": noise(2_000_000)})
    upstream.publish(dist)
    url = f"{index.url}/packages/big/{dist.filename}"
    assert requests.get(f"{index.simple_url}big/", timeout=30).status_code == 200
    try:
        response = requests.get(url, timeout=30)
    except requests.exceptions.RequestException:
        pass  # cut off mid-stream: the client knows it did not get the file
    else:
        assert response.status_code != 200 or len(response.content) != dist.size
    db = IndexDb(index)
    try:
        assert not db.cached(dist.filename)
    finally:
        db.close()
    assert blobs(index.settings) == set()
    assert list(index.settings.tmp_dir.iterdir()) == []
    metrics = requests.get(f"{index.url}/metrics", timeout=30).text
    assert 'route="file",status="500"' in metrics or ('route="file",status="507"' in metrics), (
        "the failed download is counted as the error the client got"
    )

    grow(tiny_fs, "16m")
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == dist.sha256
    assert wait_until(lambda: blobs(index.settings) == {dist.sha256})


# -- a database that refuses writes -----------------------------------------------------------


def _sqlite_path(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        pytest.skip("the lock and read-only cases are SQLite's")
    assert parsed.database
    return parsed.database


def _assert_page_miss_fails_fast(index, caplog) -> None:
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    for _ in range(3):
        response = requests.get(f"{index.simple_url}missing/", timeout=60)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        assert "database unavailable" in response.text
    assert time.monotonic() - started < 10
    lines = [r for r in caplog.records if r.name != "pypicache.access"]
    assert len(lines) < 20, [r.getMessage() for r in lines]
    assert not any(r.exc_info for r in lines if r.levelno >= logging.WARNING)


def test_a_read_only_database_answers_a_page_miss_503_at_once(
    make_index: IndexFactory, upstream: FakeUpstream, caplog
):
    upstream.publish(make_wheel("missing", "1.0"))
    index = make_index(upstream.simple_url)
    _sqlite_path(index.settings.database_url)

    def read_only(connection, _record) -> None:
        connection.execute("PRAGMA query_only=ON")

    event.listen(index.app.services.database.engine, "connect", read_only)
    index.app.services.database.engine.dispose()
    _assert_page_miss_fails_fast(index, caplog)


def test_a_locked_database_answers_a_page_miss_503_within_the_busy_timeout(
    make_index: IndexFactory, upstream: FakeUpstream, caplog
):
    upstream.publish(make_wheel("missing", "1.0"))
    index = make_index(upstream.simple_url)
    path = _sqlite_path(index.settings.database_url)

    def short_busy_timeout(connection, _record) -> None:
        connection.execute("PRAGMA busy_timeout=300")

    event.listen(index.app.services.database.engine, "connect", short_busy_timeout)
    index.app.services.database.engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        _assert_page_miss_fails_fast(index, caplog)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert requests.get(f"{index.simple_url}missing/", timeout=30).status_code == 200
