"""pypicache with its blobs in S3 (a real SeaweedFS): installs, ranges, redirects, uploads, CLI."""

from __future__ import annotations

import hashlib
import random
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from pypicache.ops import verify
from pypicache.storage.local import make_store
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import IndexDb, download, pypicache, upload_as_new_user
from tests.support.cli import run_pypicache
from tests.support.clients import make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.seaweedfs import S3Storage
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until

PASSWORD = "correct horse battery"
EXPECTED = {"app": "1.0", "liba": "1.0", "libc": "0.1"}


@pytest.fixture
def tree(upstream: FakeUpstream) -> FakeUpstream:
    """app -> liba -> libc, with versions that must not be chosen."""
    upstream.publish(make_wheel("app", "1.0", requires_dist=["liba"]))
    upstream.publish(make_sdist("app", "1.0"))
    upstream.publish(make_wheel("liba", "1.0", requires_dist=["libc"]))
    upstream.publish(make_wheel("libc", "0.1"))
    upstream.publish(make_wheel("libc", "0.2", requires_python=">=99"))
    return upstream


def s3_index(
    make_index: IndexFactory, upstream_url: str | None, s3: S3Storage, **overrides: str
) -> RunningIndex:
    return make_index(upstream_url, **s3.settings, **overrides)


def installed(python: Path) -> dict[str, str]:
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    return dict(d.name.removesuffix(".dist-info").rsplit("-", 1) for d in site.glob("*.dist-info"))


def local_blobs(index: RunningIndex) -> list[Path]:
    """Files in the local store's directory (which an index on S3 does not even create)."""
    return [p for p in index.settings.blob_dir.rglob("*") if p.is_file()]


def file_url(index: RunningIndex, dist: Dist) -> str:
    return f"{index.url}/packages/{dist.name}/{dist.filename}"


@pytest.mark.parametrize("installer", [pip_install, uv_pip_install], ids=["pip", "uv"])
def test_install_fills_the_bucket_and_installs_again_without_the_upstream(
    make_index: IndexFactory, tree: FakeUpstream, s3_storage: S3Storage, tmp_path: Path, installer
):
    index = s3_index(make_index, tree.simple_url, s3_storage)
    cold = installer(make_venv(tmp_path / "cold"), index.simple_url, "app")
    assert cold.returncode == 0, cold.stderr
    assert installed(tmp_path / "cold" / "bin" / "python") == EXPECTED

    wheels = [tree.file(f"{n}-{v}-py3-none-any.whl") for n, v in EXPECTED.items()]
    assert wait_until(lambda: {w.sha256 for w in wheels} <= s3_storage.blobs())
    assert not index.settings.blob_dir.exists(), "nothing stored on the local disk"
    assert wait_until(lambda: list(index.settings.tmp_dir.iterdir()) == []), "no temp file"

    tree.stop()
    warm = installer(make_venv(tmp_path / "warm"), index.simple_url, "app")
    assert warm.returncode == 0, warm.stderr
    assert installed(tmp_path / "warm" / "bin" / "python") == EXPECTED


def test_concurrent_downloads_during_a_fill_share_one_fetch_and_one_upload(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    data = random.Random(1).randbytes(1_000_000)
    wheel = make_wheel("popular", "1.0", extra_files={"data.bin": data})
    upstream.publish(wheel)
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    upstream.stall("/packages/")
    url = file_url(index, wheel)

    def fetch(_: int) -> bytes:
        with requests.Session() as session:
            response = session.get(url, timeout=30)
            response.raise_for_status()
            return response.content

    with ThreadPoolExecutor(8) as pool:
        results = [pool.submit(fetch, i) for i in range(8)]
        assert upstream.wait_stalled(1)
        assert s3_storage.blobs() == set()
        upstream.release()
        bodies = [r.result(timeout=30) for r in results]
    assert all(body == wheel.content for body in bodies)
    assert upstream.count(path_contains=wheel.filename) == 1
    assert wait_until(lambda: s3_storage.blobs() == {wheel.sha256})
    assert wait_until(lambda: list(index.settings.tmp_dir.iterdir()) == [])


def test_a_hash_mismatch_uploads_nothing_to_the_bucket(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    wheel = make_wheel("tampered", "1.0", extra_files={"data.bin": b"x" * 100_000})
    upstream.publish(wheel)
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    upstream.wrong_bytes(wheel.filename)
    # Several ranges wait for the verified file (one range would come from the upstream).
    wrong = requests.get(
        file_url(index, wheel), headers={"Range": "bytes=0-99,200-299"}, timeout=30
    )
    assert wrong.status_code == 502
    assert s3_storage.object_keys() == set()
    assert list(index.settings.tmp_dir.iterdir()) == []

    upstream.reset_faults()
    assert download(index, wheel) == wheel.content
    assert s3_storage.blobs() == {wheel.sha256}


def test_a_fill_whose_upload_fails_is_not_recorded(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    wheel = make_wheel("unlucky", "1.0")
    upstream.publish(wheel)
    gone = S3Storage(
        "pypicache-no-such-bucket", "blobs", s3_storage.endpoint_url, s3_storage.region, None
    )
    index = s3_index(make_index, upstream.simple_url, gone)
    # Several ranges wait for the whole file to be stored: they see the failure as it is.
    response = requests.get(
        file_url(index, wheel), headers={"Range": "bytes=0-9,20-29"}, timeout=30
    )
    assert response.status_code == 503, response.text
    assert "object store" in response.text
    db = IndexDb(index)
    try:
        assert not db.cached(wheel.filename)
    finally:
        db.close()
    assert list(index.settings.tmp_dir.iterdir()) == []


def test_ranges_heads_and_etags_on_a_file_stored_in_s3(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    dist = make_wheel("ranged", "1.0", extra_files={"data.bin": bytes(range(256)) * 400})
    upstream.publish(dist)
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    download(index, dist)
    assert dist.sha256 in s3_storage.blobs()
    url, content = file_url(index, dist), dist.content

    middle = requests.get(url, headers={"Range": "bytes=100-1099"}, timeout=10)
    assert middle.status_code == 206
    assert middle.content == content[100:1100]
    assert middle.headers["Content-Range"] == f"bytes 100-1099/{len(content)}"
    tail = requests.get(url, headers={"Range": "bytes=-22"}, timeout=10)
    assert (tail.status_code, tail.content) == (206, content[-22:])
    rest = requests.get(url, headers={"Range": f"bytes={len(content) - 5}-"}, timeout=10)
    assert (rest.status_code, rest.content) == (206, content[-5:])
    beyond = requests.get(url, headers={"Range": f"bytes={len(content)}-"}, timeout=10)
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(content)}"

    head = requests.head(url, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(content)
    whole = requests.get(url, timeout=10)
    assert whole.content == content
    assert whole.headers["ETag"] == f'"sha256:{dist.sha256}"'
    again = requests.get(url, headers={"If-None-Match": whole.headers["ETag"]}, timeout=10)
    assert again.status_code == 304


def test_redirect_mode_sends_pip_and_uv_to_a_presigned_url_once_the_file_is_stored(
    make_index: IndexFactory, tree: FakeUpstream, s3_storage: S3Storage, tmp_path: Path
):
    index = s3_index(
        make_index, tree.simple_url, s3_storage, **{"pypicache.storage_redirect": "true"}
    )
    libc = tree.file("libc-0.1-py3-none-any.whl")
    url = f"{index.url}/packages/libc/{libc.filename}"
    # Not stored yet: the fill streams it through pypicache.
    filled = requests.get(url, allow_redirects=False, timeout=30)
    assert filled.status_code == 200
    assert hashlib.sha256(filled.content).hexdigest() == libc.sha256
    assert wait_until(lambda: libc.sha256 in s3_storage.blobs())

    stored = requests.get(url, allow_redirects=False, timeout=10)
    assert stored.status_code == 302
    location = stored.headers["Location"]
    assert location.startswith(f"{s3_storage.endpoint_url}/{s3_storage.bucket}/")
    assert "X-Amz-Signature=" in location
    assert stored.headers["Cache-Control"] == "no-store"
    direct = requests.get(location, timeout=10)
    assert direct.status_code == 200
    assert hashlib.sha256(direct.content).hexdigest() == libc.sha256
    # HEAD (uv's probe) and the small metadata files are still answered here.
    assert requests.head(url, allow_redirects=False, timeout=10).status_code == 200
    metadata = requests.get(url + ".metadata", allow_redirects=False, timeout=10)
    assert metadata.status_code == 200

    cold = pip_install(make_venv(tmp_path / "cold"), index.simple_url, "app")
    assert cold.returncode == 0, cold.stderr
    filled = {tree.file(f"{n}-{v}-py3-none-any.whl").sha256 for n, v in EXPECTED.items()}
    assert wait_until(lambda: filled <= s3_storage.blobs())
    tree.stop()
    for dist_name in EXPECTED:
        wheel = tree.file(f"{dist_name}-{EXPECTED[dist_name]}-py3-none-any.whl")
        response = requests.get(
            f"{index.url}/packages/{dist_name}/{wheel.filename}", allow_redirects=False, timeout=10
        )
        assert response.status_code == 302, dist_name
    # Every file answers with a redirect now: the installers get the bytes from SeaweedFS.
    for installer in (pip_install, uv_pip_install):
        venv = tmp_path / f"warm-{installer.__name__}"
        warm = installer(make_venv(venv), index.simple_url, "app")
        assert warm.returncode == 0, warm.stderr
        assert installed(venv / "bin" / "python") == EXPECTED


def test_twine_uploads_are_stored_in_the_bucket_and_installable(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage, tmp_path: Path
):
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    db = IndexDb(index)
    try:
        db.accounts.add_user("alice", PASSWORD)
        token = db.accounts.create_token("alice", "ci")
    finally:
        db.close()
    wheel = make_wheel("acme-utils", "1.0")
    result = twine_upload(index.url + "/legacy/", "__token__", token, wheel.write(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr

    assert {wheel.sha256, wheel.metadata_sha256} <= s3_storage.blobs()
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key=s3_storage.key(wheel.sha256))
    assert head["Metadata"]["sha256"] == wheel.sha256
    assert head["ContentLength"] == wheel.size
    assert local_blobs(index) == []
    metadata = requests.get(file_url(index, wheel) + ".metadata", timeout=10)
    assert metadata.content == wheel.metadata

    python = make_venv(tmp_path / "venv")
    done = pip_install(python, index.simple_url, "acme-utils")
    assert done.returncode == 0, done.stderr
    assert installed(python) == {"acme_utils": "1.0"}


def test_an_upload_the_bucket_refuses_is_not_recorded(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    gone = S3Storage(
        "pypicache-no-such-bucket", "blobs", s3_storage.endpoint_url, s3_storage.region, None
    )
    index = s3_index(make_index, upstream.simple_url, gone)
    response = upload_as_new_user(index, make_wheel("acme-lost", "1.0"), "alice", PASSWORD)
    assert response.status_code == 503, response.text
    assert "object store" in response.text
    page = requests.get(f"{index.simple_url}acme-lost/", timeout=10)
    assert page.status_code == 404, "a file whose upload failed is never listed"
    assert list(index.settings.tmp_dir.iterdir()) == []


def corrupt_object(s3: S3Storage, sha256: str) -> None:
    """Flip one byte of a stored object, keeping its size and its label."""
    key = s3.key(sha256)
    obj = s3.client.get_object(Bucket=s3.bucket, Key=key)
    data = bytearray(obj["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(data), Metadata=obj["Metadata"])


def test_verify_and_repair_on_s3(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    damaged, lost, intact = (make_wheel(f"disk-{n}", "1.0") for n in "abc")
    for dist in (damaged, lost, intact):
        upstream.publish(dist)
        download(index, dist)
    corrupt_object(s3_storage, damaged.sha256)
    s3_storage.client.delete_object(Bucket=s3_storage.bucket, Key=s3_storage.key(lost.sha256))
    stray = f"{s3_storage.prefix}/stray/not-a-blob"
    s3_storage.client.put_object(Bucket=s3_storage.bucket, Key=stray, Body=b"misplaced")
    env = s3_storage.environ

    check = pypicache(index, "verify", **env)
    assert check.returncode == 1, check.stdout + check.stderr
    assert f"corrupt {damaged.sha256}" in check.stdout
    assert f"missing {lost.sha256}" in check.stdout
    assert "orphan not-a-blob" in check.stdout
    assert intact.sha256 not in check.stdout
    assert "3 problems, 0 repaired, 3 remain" in check.stdout
    assert stray in s3_storage.object_keys()

    repair = pypicache(index, "verify", "--repair", **env)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "3 problems, 3 repaired, 0 remain" in repair.stdout
    assert s3_storage.object_keys() == {s3_storage.key(intact.sha256)}

    again = pypicache(index, "verify", **env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "verified 1 blobs" in again.stdout
    for dist in (damaged, lost):
        download(index, dist)  # refetched, right this time
    assert {damaged.sha256, lost.sha256, intact.sha256} <= s3_storage.blobs()


class Quiet:
    """A verify reporter that shows nothing."""

    def started(self, blobs: int, total_bytes: int) -> None: ...

    def hashed(self, name: str, size: int) -> None: ...

    def found(self, finding: verify.Finding) -> None: ...


def test_verify_aborts_multipart_uploads_a_crashed_writer_left(
    make_index: IndexFactory, s3_storage: S3Storage, monkeypatch: pytest.MonkeyPatch
):
    index = s3_index(make_index, None, s3_storage)
    key = s3_storage.key("f" * 64)
    client = s3_storage.client
    upload = client.create_multipart_upload(Bucket=s3_storage.bucket, Key=key)
    client.upload_part(
        Bucket=s3_storage.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
        Body=b"p" * 1000,
    )  # fmt: skip
    # Uploads cannot be backdated: call everything older than a minute from now stale.
    monkeypatch.setattr(verify, "STALE_TEMP_AGE", -60.0)
    db = IndexDb(index)
    try:
        verifier = verify.Verifier(db.database, make_store(index.settings), index.settings.data_dir)
        found = verifier.run(repair=False, reporter=Quiet()).findings
        assert [(f.kind, f.name, f.size) for f in found] == [(verify.Kind.STALE_UPLOAD, key, 1000)]
        repaired = verifier.run(repair=True, reporter=Quiet()).findings
        assert [(f.kind, f.repaired, f.note) for f in repaired] == [
            (verify.Kind.STALE_UPLOAD, True, "aborted")
        ]
    finally:
        db.close()
    uploads = client.list_multipart_uploads(Bucket=s3_storage.bucket).get("Uploads", [])
    assert uploads == []


def test_a_corrupt_private_object_is_quarantined_locally(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    private = make_wheel("acme-secret", "1.0")
    response = upload_as_new_user(index, private, "alice", PASSWORD)
    assert response.status_code == 200, response.text
    corrupt_object(s3_storage, private.sha256)

    repair = pypicache(index, "verify", "--repair", **s3_storage.environ)
    assert repair.returncode == 1, repair.stdout + repair.stderr
    assert "ERROR: CORRUPT PRIVATE FILE" in repair.stdout
    quarantined = index.settings.data_dir / "quarantine" / private.sha256
    assert quarantined.is_file()
    assert len(quarantined.read_bytes()) == private.size
    assert private.sha256 not in s3_storage.blobs()


def test_gc_evicts_from_the_bucket(
    make_index: IndexFactory, upstream: FakeUpstream, s3_storage: S3Storage
):
    index = s3_index(make_index, upstream.simple_url, s3_storage)
    oldest, newest = make_wheel("lru-a", "1.0"), make_wheel("lru-b", "1.0")
    for dist in (oldest, newest):
        upstream.publish(dist)
        download(index, dist)
    limit = str(newest.size)
    result = pypicache(index, "gc", PYPICACHE_CACHE_MAX_BYTES=limit, **s3_storage.environ)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"evicted lru-a/{oldest.filename}" in result.stdout
    assert oldest.sha256 not in s3_storage.blobs()
    assert newest.sha256 in s3_storage.blobs()


def test_export_from_s3_and_import_into_another_bucket(
    make_index: IndexFactory,
    tree: FakeUpstream,
    s3_storage: S3Storage,
    tmp_path: Path,
):
    source = s3_index(make_index, tree.simple_url, s3_storage, name="source")
    python = make_venv(tmp_path / "fill")
    filled = pip_install(python, source.simple_url, "app")
    assert filled.returncode == 0, filled.stderr
    bundle = tmp_path / "bundle.tar"
    exported = run_pypicache(
        source.settings, "export", "--project=app", "--project=liba", "--project=libc", bundle,
        extra_env=s3_storage.environ,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    with tarfile.open(bundle) as tar:
        exported_blobs = {n.removeprefix("blobs/") for n in tar.getnames()[1:]}
    assert exported_blobs <= s3_storage.blobs()

    other = S3Storage(s3_storage.bucket, "imported", s3_storage.endpoint_url, s3_storage.region,
                      s3_storage.client)  # fmt: skip
    tree.stop()
    offline = s3_index(make_index, None, other, name="offline")
    imported = run_pypicache(offline.settings, "import", bundle, extra_env=other.environ)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    imported_keys = {k for k in s3_storage.object_keys() if k.startswith("imported/")}
    assert {k.rsplit("/", 1)[-1] for k in imported_keys} == exported_blobs

    python = make_venv(tmp_path / "offline")
    done = pip_install(python, offline.simple_url, "app")
    assert done.returncode == 0, done.stderr
    assert installed(python) == EXPECTED
