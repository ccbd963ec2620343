"""The quarantine area: removed files' bytes moved (or copied) aside, with their records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pypicache.cache.quarantine import Quarantine, Removal
from pypicache.storage.local import LocalBlobStore


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    (tmp_path / "blobs").mkdir()
    (tmp_path / "tmp").mkdir()
    return LocalBlobStore(tmp_path / "blobs", tmp_path / "tmp")


def stored(store: LocalBlobStore, content: bytes) -> str:
    writer = store.writer()
    writer.write(content)
    return writer.commit(hashlib.sha256(content).hexdigest())


def removal(sha256: str, filename: str = "lib-1.0.tar.gz") -> Removal:
    return Removal(sha256, "pypi", "lib", filename, "removed upstream (changelog serial 9)")


def test_an_unused_blob_moves_out_of_the_store_and_a_used_one_is_copied(
    store: LocalBlobStore, tmp_path: Path
):
    quarantine = Quarantine(store, tmp_path / "quarantine")
    alone, shared = stored(store, b"alone"), stored(store, b"shared")
    assert quarantine.keep(removal(alone), still_used=False)
    assert quarantine.keep(removal(shared, "other.tar.gz"), still_used=True)
    assert not store.exists(alone), "no longer servable"
    assert store.exists(shared), "another file still serves these bytes"
    assert (quarantine.root / alone).read_bytes() == b"alone"
    assert (quarantine.root / shared).read_bytes() == b"shared"
    records = {r.filename: r for r in quarantine.files()}
    assert set(records) == {"lib-1.0.tar.gz", "other.tar.gz"}
    assert records["lib-1.0.tar.gz"].kept
    assert records["lib-1.0.tar.gz"].why == "removed upstream (changelog serial 9)"
    assert quarantine.damaged() == []


def test_a_file_never_cached_is_recorded_without_bytes_and_damage_is_found(
    store: LocalBlobStore, tmp_path: Path
):
    quarantine = Quarantine(store, tmp_path / "quarantine")
    missing = hashlib.sha256(b"never fetched").hexdigest()
    assert not quarantine.keep(removal(missing), still_used=False)
    [record] = quarantine.files()
    assert not record.kept
    assert list(quarantine.blobs()) == []
    sha256 = stored(store, b"bytes")
    quarantine.keep(removal(sha256, "b.whl"), still_used=False)
    (quarantine.root / sha256).write_bytes(b"tampered")
    assert quarantine.damaged() == [sha256]


def test_a_name_that_is_no_sha256_is_refused(store: LocalBlobStore, tmp_path: Path):
    quarantine = Quarantine(store, tmp_path / "quarantine")
    assert not quarantine.keep(removal("../../etc/passwd"), still_used=False)
    assert list(quarantine.files()) == []
