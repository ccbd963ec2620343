"""``pypicache verify``: the store rehashed against the database, and repaired where it can be."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import IndexDb, blob_path, blobs, download, pypicache
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.uploads import form_fields, post_upload

PASSWORD = "correct horse battery"
TWO_HOURS_AGO = time.time() - 7200


@pytest.fixture
def site(
    make_index: IndexFactory, upstream: FakeUpstream
) -> Iterator[tuple[RunningIndex, IndexDb]]:
    index = make_index(upstream.simple_url)
    db = IndexDb(index)
    yield index, db
    db.close()


def corrupt(index: RunningIndex, sha256: str) -> None:
    """Flip one byte of a stored blob: same size, other bytes, as a failing disk would."""
    path = blob_path(index.settings, sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def line_of(output: str, needle: str) -> str:
    lines = [line for line in output.splitlines() if needle in line]
    assert len(lines) == 1, output
    return lines[0]


def test_verify_finds_corrupt_missing_and_orphaned_blobs_and_repair_fixes_them(
    site, upstream: FakeUpstream
):
    index, db = site
    damaged, lost, intact = (make_wheel(f"disk-{n}", "1.0") for n in "abc")
    for dist in (damaged, lost, intact):
        upstream.publish(dist)
        download(index, dist)
    corrupt(index, damaged.sha256)
    blob_path(index.settings, lost.sha256).unlink()
    orphan = b"bytes no file row refers to"
    orphan_sha256 = hashlib.sha256(orphan).hexdigest()
    orphan_path = blob_path(index.settings, orphan_sha256)
    orphan_path.parent.mkdir(parents=True, exist_ok=True)
    orphan_path.write_bytes(orphan)
    stale = index.settings.tmp_dir / "fill-crashed.part"
    stale.write_bytes(b"half a download")
    live = index.settings.tmp_dir / "fill-running.part"
    live.write_bytes(b"a download in progress")
    for old in (orphan_path, stale):
        os.utime(old, (TWO_HOURS_AGO, TWO_HOURS_AGO))

    check = pypicache(index, "verify")
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"disk-a/{damaged.filename}" in line_of(check.stdout, f"corrupt {damaged.sha256}")
    assert f"disk-b/{lost.filename}" in line_of(check.stdout, f"missing {lost.sha256}")
    line_of(check.stdout, f"orphan {orphan_sha256}")
    line_of(check.stdout, "stale temp file fill-crashed.part")
    assert "fill-running" not in check.stdout
    assert intact.sha256 not in check.stdout
    assert "4 problems, 0 repaired, 4 remain" in check.stdout
    assert "verify:" in check.stderr  # progress lines: stderr is no terminal here
    # Only looked.
    assert orphan_path.exists()
    assert stale.exists()
    assert blob_path(index.settings, damaged.sha256).exists()
    assert db.cached(lost.filename)

    repair = pypicache(index, "verify", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "4 problems, 4 repaired, 0 remain" in repair.stdout
    assert blobs(index.settings) == {intact.sha256}
    assert not stale.exists()
    assert live.exists()
    assert not db.cached(damaged.filename)
    assert not db.cached(lost.filename)
    assert db.cached(intact.filename)

    again = pypicache(index, "verify")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "verified 1 blobs" in again.stdout
    assert "0 problems" in again.stdout

    # Refetched on the next download, and right this time.
    for dist in (damaged, lost):
        download(index, dist)
        assert db.cached(dist.filename)
    stored = blob_path(index.settings, damaged.sha256).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == damaged.sha256


def upload_private(index: RunningIndex, db: IndexDb, dist: Dist) -> None:
    db.accounts.add_user("alice", PASSWORD)
    response = post_upload(
        index.url + "/legacy/", ("alice", PASSWORD), form_fields(dist), dist.filename, dist.content
    )
    assert response.status_code == 200, response.text


def test_a_corrupt_private_file_is_reported_loudly_and_never_served(site):
    index, db = site
    private = make_wheel("acme-secret", "1.0")
    upload_private(index, db, private)
    corrupt(index, private.sha256)

    repair = pypicache(index, "verify", "--repair")
    assert repair.returncode == 1, repair.stdout + repair.stderr
    error = line_of(repair.stdout, "ERROR: CORRUPT PRIVATE FILE")
    assert private.sha256 in error
    assert f"acme-secret/{private.filename}" in error
    assert "cannot be refetched" in error
    assert "upload the file again" in error
    assert "CORRUPT PRIVATE" in repair.stderr  # the log says it too
    assert "1 remain" in repair.stdout
    # Set aside, not destroyed; and no longer served as if it were the file.
    quarantined = index.settings.data_dir / "quarantine" / private.sha256
    assert quarantined.is_file()
    assert not blob_path(index.settings, private.sha256).exists()
    served = requests.get(f"{index.url}/packages/acme-secret/{private.filename}", timeout=10)
    assert served.status_code != 200

    # Still a problem until someone uploads it again: nothing pretends otherwise.
    again = pypicache(index, "verify", "--repair")
    assert again.returncode == 1
    line_of(again.stdout, "ERROR: MISSING PRIVATE FILE")
    assert db.cached(private.filename)
