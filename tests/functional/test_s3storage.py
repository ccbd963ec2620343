"""The S3 blob store against a real SeaweedFS: verified writes, streamed and ranged reads."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
import requests

from pypicache.errors import HashMismatch, StorageUnavailable
from pypicache.storage.s3 import S3BlobStore
from tests.support.dists import make_wheel
from tests.support.seaweedfs import S3Storage


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def make_store(s3: S3Storage, tmp: Path, **options: object) -> S3BlobStore:
    return S3BlobStore(
        s3.bucket, s3.prefix, tmp, endpoint_url=s3.endpoint_url, region=s3.region, **options
    )


def store_bytes(store: S3BlobStore, data: bytes, expected: str | None = None) -> str:
    writer = store.writer()
    for start in range(0, len(data), 64 * 1024):
        writer.write(data[start : start + 64 * 1024])
    return writer.commit(expected if expected is not None else hashlib.sha256(data).hexdigest())


def test_a_committed_blob_is_stored_under_its_hash_and_labelled_with_it(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    data = os.urandom(100_000)
    sha256 = hashlib.sha256(data).hexdigest()
    writer = store.writer()
    writer.write(data)
    assert writer.temp_path.read_bytes() == data  # what a fill's readers tail meanwhile
    assert writer.commit(sha256) == sha256

    assert s3_storage.object_keys() == {s3_storage.key(sha256)}
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.key(sha256))
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["sha256"] == sha256
    assert store.exists(sha256)
    assert store.size(sha256) == len(data)
    assert not writer.temp_path.exists()
    assert list(tmp_dir.iterdir()) == []
    with store.open(sha256) as handle:
        assert handle.size == len(data)
        assert handle.read() == data


def test_a_hash_mismatch_uploads_nothing(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    with pytest.raises(HashMismatch):
        store_bytes(store, b"not what the page promised", expected="0" * 64)
    assert s3_storage.object_keys() == set()
    assert list(tmp_dir.iterdir()) == []


def test_a_big_blob_is_uploaded_in_parts_and_reads_back_whole(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir, part_size=5 * 1024 * 1024)  # S3's smallest part
    data = os.urandom(11 * 1024 * 1024 + 123)
    sha256 = store_bytes(store, data)
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.key(sha256))
    assert head["ETag"].strip('"').endswith("-3")  # three parts: a multipart upload
    assert head["Metadata"]["sha256"] == sha256
    digest = hashlib.sha256()
    with store.open(sha256) as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == sha256


def test_storing_the_same_bytes_twice_uploads_once(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    sha256 = store_bytes(store, b"content addressed")
    first = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.key(sha256))
    store_bytes(store, b"content addressed")
    again = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.key(sha256))
    assert again["LastModified"] == first["LastModified"]


def test_a_mislabelled_object_is_replaced(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    data = b"the right bytes"
    sha256 = hashlib.sha256(data).hexdigest()
    s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key=s3_storage.key(sha256), Body=b"wrong bytes, no label"
    )
    store_bytes(store, data)
    with store.open(sha256) as handle:
        assert handle.read() == data


def test_an_upload_to_a_missing_bucket_fails_and_leaves_nothing(s3_storage, tmp_dir):
    store = S3BlobStore(
        "no-such-bucket-here", "blobs", tmp_dir,
        endpoint_url=s3_storage.endpoint_url, region=s3_storage.region, retries=0,
    )  # fmt: skip
    with pytest.raises(StorageUnavailable, match="no-such-bucket-here"):
        store_bytes(store, b"going nowhere")
    assert list(tmp_dir.iterdir()) == []
    buckets = {b["Name"] for b in s3_storage.client.list_buckets()["Buckets"]}
    assert "no-such-bucket-here" not in buckets


def test_an_endpoint_that_refuses_connections_is_a_storage_error(s3_storage, tmp_dir):
    store = S3BlobStore(
        s3_storage.bucket, "blobs", tmp_dir,
        endpoint_url="http://127.0.0.1:9", region=s3_storage.region,
        connect_timeout=1, read_timeout=1, retries=0,
    )  # fmt: skip
    with pytest.raises(StorageUnavailable):
        store_bytes(store, b"nobody listens")
    with pytest.raises(StorageUnavailable):
        store.exists("0" * 64)
    assert list(tmp_dir.iterdir()) == []
    assert s3_storage.object_keys() == set()


def test_open_seek_and_ranges_read_only_what_is_asked(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    data = bytes(range(256)) * 1000
    sha256 = store_bytes(store, data)
    with store.open(sha256) as handle:
        assert handle.size == len(data)
        with pytest.raises(io.UnsupportedOperation):
            handle.fileno()  # not a file: served without the file wrapper
        handle.seek(1000)
        assert handle.read(10) == data[1000:1010]
        assert handle.tell() == 1010
        assert handle.read(5) == data[1010:1015]  # the same body goes on
        handle.seek(-20, io.SEEK_END)
        assert handle.read() == data[-20:]
        assert handle.read(10) == b""
        handle.seek(3)
        assert handle.read(4) == data[3:7]
    assert not store.in_use(sha256)


def test_open_of_an_absent_blob_is_file_not_found(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    with pytest.raises(FileNotFoundError):
        store.open("a" * 64)
    assert not store.exists("a" * 64)
    assert store.size("a" * 64) is None
    assert not store.in_use("a" * 64)


def test_delete_and_delete_unless_in_use(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    kept = store_bytes(store, b"being served")
    dropped = store_bytes(store, b"not wanted")
    store.delete(dropped)
    assert not store.exists(dropped)
    store.delete(dropped)  # deleting what is gone is fine

    handle = store.open(kept)
    assert not store.delete_unless_in_use(kept)
    assert store.exists(kept)
    handle.close()
    assert store.delete_unless_in_use(kept)
    assert s3_storage.object_keys() == set()


def test_the_listing_shows_every_object_under_the_prefix(s3_storage, tmp_dir):
    store = make_store(s3_storage, tmp_dir)
    sha256 = store_bytes(store, b"listed")
    s3_storage.client.put_object(
        Bucket=s3_storage.bucket, Key=f"{s3_storage.prefix}/stray/file", Body=b"x"
    )
    s3_storage.client.put_object(Bucket=s3_storage.bucket, Key="elsewhere/file", Body=b"y")
    listing = {(o.name, o.location, o.size) for o in store.objects()}
    assert listing == {
        (sha256, s3_storage.key(sha256), 6),
        ("file", f"{s3_storage.prefix}/stray/file", 1),
    }


def test_a_presigned_url_is_offered_only_with_redirects_on(s3_storage, tmp_dir):
    sha256 = store_bytes(make_store(s3_storage, tmp_dir), b"fetched by the client itself")
    assert make_store(s3_storage, tmp_dir).download_url(sha256, "x-1.0.tar.gz") is None
    url = make_store(s3_storage, tmp_dir, redirect=True).download_url(sha256, "x-1.0.tar.gz")
    assert url is not None
    assert url.startswith(s3_storage.endpoint_url)
    assert "X-Amz-Expires=300" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"fetched by the client itself"
    assert 'filename="x-1.0.tar.gz"' in response.headers["Content-Disposition"]


def test_zipfile_reads_a_wheel_member_straight_from_the_bucket(s3_storage, tmp_dir):
    wheel = make_wheel("zipped", "1.0", extra_files={"data.bin": os.urandom(200_000)})
    store = make_store(s3_storage, tmp_dir)
    sha256 = store_bytes(store, wheel.content)
    with store.open(sha256) as handle, zipfile.ZipFile(handle) as archive:  # type: ignore[arg-type]
        assert archive.read("zipped-1.0.dist-info/METADATA") == wheel.metadata
