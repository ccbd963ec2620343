"""Private packages end to end: twine uploads, pip installs, shadowing, refusals, read_auth."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from pypicache.models import Alarm, AuditEntry, File
from tests.conftest import IndexFactory
from tests.support.clients import (
    clean_client_env,
    installed,
    make_venv,
    pip_install,
    uv_pip_install,
)
from tests.support.dists import make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import PASSWORD, Db, admin_cli, blobs, page, upload_url
from tests.support.uploads import form_fields, post_upload, twine_upload
from tests.support.waiting import wait_until


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream):
    index = make_index(upstream.simple_url)
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("bob", PASSWORD)
    db.accounts.add_user("root", PASSWORD, admin=True)
    yield index, db
    db.engine.dispose()


def test_twine_uploads_with_a_token_and_a_password_and_pip_and_uv_install(site, upstream, tmp_path):
    index, db = site
    token = db.accounts.create_token("alice", "ci")
    wheel = make_wheel("acme-utils", "1.0", requires_dist=["acme-core"])
    sdist = make_sdist("acme-utils", "1.0")
    core = make_wheel("acme_core", "0.3")
    result = twine_upload(
        upload_url(index), "__token__", token, wheel.write(tmp_path), sdist.write(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = twine_upload(upload_url(index), "alice", PASSWORD, core.write(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    # Each new name was looked up once, to know that the upstream does not have it.
    assert upstream.count(path_prefix="/simple/acme-utils/") == 1
    assert upstream.count(path_prefix="/simple/acme-core/") == 1
    upstream.clear_log()

    data = page(index, "acme-utils").json()
    assert sorted(f["filename"] for f in data["files"]) == sorted([wheel.filename, sdist.filename])
    entry = next(f for f in data["files"] if f["filename"] == wheel.filename)
    assert entry["hashes"] == {"sha256": wheel.sha256}
    assert entry["core-metadata"] == {"sha256": wheel.metadata_sha256}
    metadata = requests.get(
        f"{index.url}/packages/acme-utils/{wheel.filename}.metadata", timeout=10
    )
    assert metadata.content == wheel.metadata
    assert page(index, "acme-utils").headers["Cache-Control"] == "no-cache"

    for installer, name in ((pip_install, "pip"), (uv_pip_install, "uv")):
        python = make_venv(tmp_path / name)
        result = installer(python, index.simple_url, "acme-utils")
        assert result.returncode == 0, result.stderr
        assert installed(python) == {"acme_utils": "1.0", "acme_core": "0.3"}
    assert upstream.count(path_contains="acme") == 0, "private names never reach the upstream"

    actions = db.query(select(AuditEntry.action, AuditEntry.actor, AuditEntry.filename))
    assert ("upload", "alice", wheel.filename) in actions
    assert ("upload", "alice", core.filename) in actions


def test_a_private_name_shadows_a_higher_upstream_version(site, upstream, tmp_path):
    index, _db = site
    upstream.publish(make_wheel("internal-lib", "99.0"))
    ours = make_wheel("internal-lib", "1.0")
    response = post_upload(
        upload_url(index), ("root", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert response.status_code == 200, response.text
    upstream.clear_log()  # the upload asked whether the upstream has the name
    assert page(index, "internal-lib").json()["versions"] == ["1.0"]
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, index.simple_url, "internal-lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"internal_lib": "1.0"}
    assert upstream.count(path_prefix="/simple/internal-lib/") == 0


def test_claiming_a_cached_upstream_name_hides_its_upstream_files_unless_merged(
    site, upstream, tmp_path
):
    index, _db = site
    upstream.publish(make_wheel("claimed", "2.0"))
    assert page(index, "claimed").json()["versions"] == ["2.0"]
    ours = make_wheel("claimed", "1.0")
    response = post_upload(
        upload_url(index), ("root", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert response.status_code == 200, response.text
    assert page(index, "claimed").json()["versions"] == ["1.0"]

    merge = admin_cli(index, "merge-upstream", "claimed", "on")
    assert merge.returncode == 0, merge.stderr
    # The running server sees the change within its private refresh interval.
    assert wait_until(lambda: page(index, "claimed").json()["versions"] == ["1.0", "2.0"])


def _stored_files(db: Db) -> int:
    return db.query(select(func.count()).select_from(File).where(File.origin == "private"))[0][0]


@pytest.mark.parametrize(
    ("case", "status", "phrase"),
    [
        ("no credentials", 401, "credentials"),
        ("wrong password", 401, "credentials"),
        ("digest mismatch", 400, "digest"),
        ("corrupt archive", 400, "Invalid distribution file"),
        ("name mismatch", 400, ""),
        ("version mismatch", 400, ""),
        ("path trick", 400, ""),
        ("too large", 400, "File too large"),
        ("bad action", 400, ":action"),
        ("register", 410, "no longer"),
    ],
)
def test_rejected_uploads_store_nothing(site, case, status, phrase):
    index, db = site
    wheel = make_wheel("rejectme", "1.0", extra_files={"blob.bin": b"0" * 5000})
    auth: tuple[str, str] | None = ("alice", PASSWORD)
    fields = form_fields(wheel)
    filename, content = wheel.filename, wheel.content
    if case == "no credentials":
        auth = None
    elif case == "wrong password":
        auth = ("alice", "not the password")
    elif case == "digest mismatch":
        fields["sha256_digest"] = "0" * 64
    elif case == "corrupt archive":
        content = content[: len(content) // 2]  # the zip's central directory is gone
        fields = form_fields(wheel, sha256_digest=None, blake2_256_digest=None)
        fields["sha256_digest"] = hashlib.sha256(content).hexdigest()
    elif case == "name mismatch":
        fields["name"] = "othername"
    elif case == "version mismatch":
        fields["version"] = "2.0"
    elif case == "path trick":
        filename = "../../" + wheel.filename
    elif case == "too large":
        content = content + b"\0" * (index.settings.max_upload_size + 1 - len(content))
    elif case == "bad action":
        fields[":action"] = "frobnicate"
    elif case == "register":
        fields[":action"] = "submit"
    before = blobs(index)
    response = post_upload(upload_url(index), auth, fields, filename, content)
    assert response.status_code == status, response.text
    assert phrase in response.reason
    assert phrase in response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert blobs(index) == before
    assert _stored_files(db) == 0
    assert page(index, "rejectme").status_code == 404


def test_a_name_longer_than_the_database_holds_is_refused_with_the_reason(site):
    index, db = site
    wheel = make_wheel("n" * 256, "1.0")
    response = post_upload(
        upload_url(index), ("alice", PASSWORD), form_fields(wheel), wheel.filename, wheel.content
    )
    assert response.status_code == 400, response.text
    assert "Use at most 255 characters" in response.reason
    assert _stored_files(db) == 0


def test_only_members_upload_to_a_private_project(site):
    index, _db = site
    first = make_wheel("alices-lib", "1.0")
    second = make_wheel("alices-lib", "1.1")
    url = upload_url(index)
    assert post_upload(
        url, ("alice", PASSWORD), form_fields(first), first.filename, first.content
    ).ok
    refused = post_upload(
        url, ("bob", PASSWORD), form_fields(second), second.filename, second.content
    )
    assert refused.status_code == 403
    assert "isn't allowed to upload to project 'alices-lib'" in refused.reason
    # An admin may, and may grant.
    assert post_upload(
        url, ("root", PASSWORD), form_fields(second), second.filename, second.content
    ).ok
    third = make_wheel("alices-lib", "1.2")
    assert admin_cli(index, "grant", "alices-lib", "bob").returncode == 0
    assert post_upload(url, ("bob", PASSWORD), form_fields(third), third.filename, third.content).ok


def test_existing_files_identical_reuploads_and_deleted_filenames(site):
    index, db = site
    wheel = make_wheel("steady-lib", "1.0")
    url, auth = upload_url(index), ("alice", PASSWORD)
    assert (
        post_upload(url, auth, form_fields(wheel), wheel.filename, wheel.content).status_code == 200
    )
    again = post_upload(url, auth, form_fields(wheel), wheel.filename, wheel.content)
    assert again.status_code == 200, "twine retries: an identical re-upload is fine"

    other = make_wheel("steady-lib", "1.0", extra_files={"x": b"different"})
    before = blobs(index)
    conflict = post_upload(url, auth, form_fields(other), other.filename, other.content)
    assert conflict.status_code == 400
    assert conflict.reason.startswith("File already exists")
    assert blobs(index) == before
    (alarm,) = db.query(select(Alarm.kind, Alarm.filename))
    assert alarm == ("upload-conflict", wheel.filename)

    assert admin_cli(index, "yank", "steady-lib", "1.0", "--reason", "oops").returncode == 0
    assert wait_until(lambda: page(index, "steady-lib").json()["files"][0].get("yanked") == "oops")
    assert admin_cli(index, "delete", "steady-lib", wheel.filename).returncode == 0
    assert wait_until(lambda: page(index, "steady-lib").json()["files"] == [])
    assert wheel.sha256 not in blobs(index)
    reuse = post_upload(url, auth, form_fields(wheel), wheel.filename, wheel.content)
    assert reuse.status_code == 400
    assert "previously used" in reuse.reason
    actions = [a for (a,) in db.query(select(AuditEntry.action))]
    assert actions.count("upload") == 1
    assert "yank" in actions
    assert "delete" in actions


def test_deleting_a_wheel_keeps_the_core_metadata_its_sibling_shares(site):
    """Wheels of one release for two platforms carry the same METADATA: one blob for both."""
    index, _db = site
    linux = make_wheel("twin-lib", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    windows = make_wheel("twin-lib", "1.0", tag="cp311-cp311-win_amd64")
    assert linux.metadata_sha256 == windows.metadata_sha256
    url, auth = upload_url(index), ("alice", PASSWORD)
    for wheel in (linux, windows):
        response = post_upload(url, auth, form_fields(wheel), wheel.filename, wheel.content)
        assert response.status_code == 200, response.reason

    assert admin_cli(index, "delete", "twin-lib", linux.filename).returncode == 0
    assert wait_until(lambda: len(page(index, "twin-lib").json()["files"]) == 1)
    assert linux.sha256 not in blobs(index)
    metadata = requests.get(
        f"{index.url}/packages/twin-lib/{windows.filename}.metadata", timeout=10
    )
    assert metadata.status_code == 200
    assert metadata.content == windows.metadata


def test_read_auth_requires_credentials_for_every_read(make_index, upstream, tmp_path):
    index = make_index(upstream.simple_url, **{"pypicache.read_auth": "true"})
    db = Db(index)
    try:
        db.accounts.add_user("reader", PASSWORD)
        token = db.accounts.create_token("reader")
        wheel = make_wheel("guarded", "1.0")
        upstream.publish(wheel)
        anonymous = page(index, "guarded")
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        assert page(index, "guarded", auth=("reader", "wrong password")).status_code == 401
        assert page(index, "guarded", auth=("reader", PASSWORD)).status_code == 200
        # Served from the hot path now: still no anonymous access.
        assert page(index, "guarded").status_code == 401
        assert page(index, "guarded", auth=("__token__", token)).status_code == 200
        file_url = f"{index.url}/packages/guarded/{wheel.filename}"
        assert requests.get(file_url, timeout=10).status_code == 401
        assert requests.get(index.url + "/health", timeout=10).status_code == 200

        authed = index.simple_url.replace(
            "http://", f"http://reader:{PASSWORD.replace(' ', '%20')}@"
        )
        python = make_venv(tmp_path / "venv")
        result = pip_install(python, authed, "guarded")
        assert result.returncode == 0, result.stderr
        assert installed(python) == {"guarded": "1.0"}
        revoked = db.accounts.tokens("reader")[0].id
        db.accounts.revoke_token(revoked)
    finally:
        db.engine.dispose()


def test_user_and_token_commands(tmp_path):
    env = {**clean_client_env(), "PYPICACHE_DATA_DIR": str(tmp_path / "data")}
    cli = str(Path(sys.executable).parent / "pypicache")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
        )

    assert (
        run("user", "add", "carol", "--admin", "--password-stdin", stdin=PASSWORD + "\n").returncode
        == 0
    )
    again = run("user", "add", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1
    assert "exists" in again.stderr
    short = run("user", "add", "dave", "--password-stdin", stdin="short\n")
    assert short.returncode == 1
    assert "at least" in short.stderr
    created = run("token", "create", "carol", "--description", "laptop")
    assert created.returncode == 0
    token = created.stdout.strip()
    assert token.startswith("pypicache-")
    listing = run("token", "list", "carol").stdout
    assert "laptop" in listing
    assert token not in listing
    token_id = listing.split("\t")[0]
    assert run("token", "revoke", token_id).returncode == 0
    assert "revoked" in run("token", "list").stdout
    assert "carol\tadmin" in run("user", "list").stdout
