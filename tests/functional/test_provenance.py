"""PEP 740 provenance through pypicache: the upstream's, fetched once and invalidated with
its file, and the attestations twine uploads, served the same way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import select

from pypicache.models import ProvenanceDocument
from tests.conftest import IndexFactory, RunningIndex
from tests.support.attestations import provenance, write_attestation
from tests.support.clients import installed, make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import JSON, PASSWORD, Db, upload_url
from tests.support.uploads import twine_upload


def json_page(index: RunningIndex, project: str) -> tuple[str, dict]:
    url = f"{index.simple_url}{project}/"
    response = requests.get(url, headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 200, response.text
    return url, response.json()


def provenance_url(index: RunningIndex, project: str, filename: str) -> str:
    """The provenance URL the JSON page gives for ``filename``, made absolute as a client
    makes it."""
    url, data = json_page(index, project)
    entry = next(f for f in data["files"] if f["filename"] == filename)
    return urljoin(url, entry["provenance"])


def attested(upstream: FakeUpstream, dist: Dist, repository: str = "org/repo") -> dict:
    upstream.publish(dist)
    document = provenance(dist.filename, dist.sha256, repository=repository)
    upstream.attest(dist.filename, document)
    return document


def integrity_requests(upstream: FakeUpstream) -> int:
    return upstream.count(path_prefix="/integrity/")


def test_pages_link_provenance_next_to_the_file_and_installers_still_install(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    wheel = make_wheel("signed", "1.0")
    attested(upstream, wheel)
    plain = make_wheel("signed", "0.9")
    upstream.publish(plain)

    _, data = json_page(index, "signed")
    assert data["meta"]["api-version"] == "1.4"
    entries = {f["filename"]: f for f in data["files"]}
    assert entries[wheel.filename]["provenance"] == (
        f"../../packages/signed/{wheel.filename}.provenance"
    )
    assert "provenance" not in entries[plain.filename]
    html = requests.get(f"{index.simple_url}signed/", timeout=30).text
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert "data-provenance" not in html, "HTML would need a fully-qualified URL"
    assert upstream.base_url not in html, "every link points at pypicache"

    for install in (pip_install, uv_pip_install):
        python = make_venv(tmp_path / install.__name__)
        result = install(python, index.simple_url, "signed==1.0")
        assert result.returncode == 0, result.stdout + result.stderr
        assert installed(python)["signed"] == "1.0"


def test_the_provenance_url_serves_the_upstreams_document_fetched_once(
    index: RunningIndex, upstream: FakeUpstream
):
    wheel = make_wheel("signed", "1.0")
    document = attested(upstream, wheel)
    url = provenance_url(index, "signed", wheel.filename)

    first = requests.get(url, timeout=30)
    assert first.status_code == 200, first.text
    assert first.headers["Content-Type"] == "application/json"
    assert first.json() == document
    again = requests.get(url, timeout=30)
    assert again.content == first.content
    assert integrity_requests(upstream) == 1, "fetched once, then served from the database"
    not_modified = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=30)
    assert not_modified.status_code == 304

    # The same document through one upstream alone.
    alone = f"{index.url}/u/{index.settings.upstreams[0].name}/packages/signed/{wheel.filename}"
    assert requests.get(alone + ".provenance", timeout=30).json() == document


def test_a_file_without_provenance_answers_404_with_the_reason(
    index: RunningIndex, upstream: FakeUpstream
):
    wheel = make_wheel("unsigned", "1.0")
    upstream.publish(wheel)
    json_page(index, "unsigned")
    response = requests.get(
        f"{index.url}/packages/unsigned/{wheel.filename}.provenance", timeout=30
    )
    assert response.status_code == 404
    assert f"{wheel.filename} has no provenance" in response.text
    missing = requests.get(f"{index.url}/packages/unsigned/nope-1.0.tar.gz.provenance", timeout=30)
    assert missing.status_code == 404


def test_with_the_upstream_down_a_kept_document_is_served_and_a_missing_one_is_502(
    index: RunningIndex, upstream: FakeUpstream
):
    kept, missing = make_wheel("signed", "1.0"), make_wheel("signed", "2.0")
    document = attested(upstream, kept)
    attested(upstream, missing)
    kept_url = provenance_url(index, "signed", kept.filename)
    missing_url = provenance_url(index, "signed", missing.filename)
    assert requests.get(kept_url, timeout=30).status_code == 200

    upstream.down = True
    assert requests.get(kept_url, timeout=30).json() == document
    response = requests.get(missing_url, timeout=30)
    assert response.status_code == 502
    assert "upstream" in response.text


def test_an_invalid_upstream_document_is_a_502_and_never_kept(
    index: RunningIndex, upstream: FakeUpstream
):
    wheel = make_wheel("signed", "1.0")
    upstream.publish(wheel)
    upstream.attest(wheel.filename, {"version": 2, "attestation_bundles": []})
    url = provenance_url(index, "signed", wheel.filename)
    response = requests.get(url, timeout=30)
    assert response.status_code == 502
    assert "provenance" in response.text
    assert requests.get(url, timeout=30).status_code == 502
    assert integrity_requests(upstream) == 2, "nothing invalid was kept"
    assert documents(index, ProvenanceDocument) == []


def documents(index: RunningIndex, *columns: Any) -> list[Any]:
    """The stored provenance documents, read from the index's database."""
    db = Db(index)
    try:
        return db.query(select(*columns))
    finally:
        db.engine.dispose()


def test_a_replaced_file_never_shows_the_old_files_provenance(
    make_index: IndexFactory, upstream: FakeUpstream
):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "0"})
    wheel = make_wheel("mutable", "1.0")
    attested(upstream, wheel, repository="org/old")
    url = provenance_url(index, "mutable", wheel.filename)
    assert requests.get(url, timeout=30).json()["attestation_bundles"][0]["publisher"][
        "repository"
    ] == ("org/old")
    assert len(documents(index, ProvenanceDocument)) == 1

    new_bytes = make_wheel("mutable", "1.0", extra_files={"extra.txt": b"new"}).content
    upstream.replace_bytes(wheel.filename, new_bytes)
    new_sha = hashlib.sha256(new_bytes).hexdigest()
    upstream.attest(wheel.filename, provenance(wheel.filename, new_sha, repository="org/new"))
    _, data = json_page(index, "mutable")  # the refetch sees the new hash
    assert data["files"][0]["hashes"]["sha256"] == new_sha
    assert documents(index, ProvenanceDocument) == [], "invalidated with its file"

    served = requests.get(url, timeout=30).json()
    assert served["attestation_bundles"][0]["publisher"]["repository"] == "org/new"
    assert integrity_requests(upstream) == 2


def test_a_held_files_provenance_is_held_too(make_index: IndexFactory, upstream: FakeUpstream):
    index = make_index(upstream.simple_url, **{"pypicache.cooldown": "7d"})
    wheel = make_wheel("fresh", "1.0")
    attested(upstream, wheel)
    json_page(index, "fresh")  # listed upstream, held here
    response = requests.get(f"{index.url}/packages/fresh/{wheel.filename}.provenance", timeout=30)
    assert response.status_code == 403
    assert integrity_requests(upstream) == 0


@pytest.fixture
def private_index(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    index = make_index(upstream.simple_url)
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    return index


def test_twine_upload_with_attestations_serves_them_as_the_files_provenance(
    private_index: RunningIndex, tmp_path: Path
):
    wheel = make_wheel("inhouse", "1.0")
    dist = tmp_path / wheel.filename
    dist.write_bytes(wheel.content)
    attestation = write_attestation(dist, wheel.sha256)
    result = twine_upload(
        upload_url(private_index), "alice", PASSWORD, dist, attestation, options=["--attestations"]
    )
    assert result.returncode == 0, result.stdout + result.stderr

    document = requests.get(
        provenance_url(private_index, "inhouse", wheel.filename), timeout=30
    ).json()
    (bundle,) = document["attestation_bundles"]
    assert document["version"] == 1
    assert bundle["publisher"] == {"kind": "pypicache-upload", "claims": {}, "verified": False}
    assert bundle["attestations"] == [json.loads(attestation.read_text())]


def test_twine_upload_without_attestations_gives_no_provenance_and_bad_ones_are_refused(
    private_index: RunningIndex, tmp_path: Path
):
    plain = make_wheel("inhouse", "1.0")
    path = tmp_path / plain.filename
    path.write_bytes(plain.content)
    result = twine_upload(upload_url(private_index), "alice", PASSWORD, path)
    assert result.returncode == 0, result.stdout + result.stderr
    _, data = json_page(private_index, "inhouse")
    assert "provenance" not in data["files"][0]

    other = make_wheel("inhouse", "2.0")
    path = tmp_path / other.filename
    path.write_bytes(other.content)
    wrong = write_attestation(path, plain.sha256)  # about other bytes
    result = twine_upload(
        upload_url(private_index), "alice", PASSWORD, path, wrong, options=["--attestations"]
    )
    assert result.returncode != 0
    assert "Invalid attestations supplied during upload" in result.stdout + result.stderr
    _, data = json_page(private_index, "inhouse")
    assert [f["filename"] for f in data["files"]] == [plain.filename], "nothing was stored"


def test_an_allowed_overwrite_serves_the_new_files_attestations_only(
    make_index: IndexFactory, upstream: FakeUpstream, tmp_path: Path
):
    index = make_index(upstream.simple_url, **{"pypicache.allow_overwrite": "true"})
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    first = make_wheel("inhouse", "1.0")
    second = make_wheel("inhouse", "1.0", extra_files={"extra.txt": b"rebuilt"})
    for number, wheel in enumerate((first, second)):
        dist = tmp_path / str(number) / wheel.filename
        dist.parent.mkdir()
        dist.write_bytes(wheel.content)
        attestation = write_attestation(dist, wheel.sha256)
        result = twine_upload(
            upload_url(index), "alice", PASSWORD, dist, attestation, options=["--attestations"]
        )
        assert result.returncode == 0, result.stdout + result.stderr

    document = requests.get(provenance_url(index, "inhouse", first.filename), timeout=30).json()
    (bundle,) = document["attestation_bundles"]
    assert bundle["attestations"] == [json.loads(attestation.read_text())]
    assert documents(index, ProvenanceDocument.file_sha256) == [(second.sha256,)]
