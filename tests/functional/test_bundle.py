"""``pypicache export`` and ``import``: cached projects carried to an index with no upstream."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from sqlalchemy import select

from pypicache.auth.accounts import Accounts
from pypicache.db import Database, get_engine
from pypicache.models import AuditEntry, File, Project
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cli import run_pypicache
from tests.support.clients import clean_client_env, make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.uploads import form_fields, post_upload

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "text/html"
PASSWORD = "correct horse battery"
UPSTREAM_PROJECTS = ("app", "liba", "libb", "libc")
LINUX_39 = "cp39-cp39-manylinux_2_17_x86_64"
EXPECTED = {"app": "1.0", "liba": "1.0", "libb": "2.1", "libc": "0.1"}


@pytest.fixture
def tree(upstream: FakeUpstream) -> FakeUpstream:
    """app -> (liba, libb>=2), liba -> libc; with an sdist, a yank, a requires-python."""
    upstream.publish(make_wheel("app", "1.0", requires_dist=["liba", "libb>=2"]))
    upstream.publish(make_sdist("app", "1.0"))
    upstream.publish(make_wheel("liba", "0.9"))
    upstream.publish(make_wheel("liba", "1.0", requires_dist=["libc"]))
    upstream.publish(make_wheel("libb", "2.1"))
    upstream.publish(make_wheel("libb", "3.0", requires_python=">=99"))
    upstream.publish(make_wheel("libc", "0.1"))
    upstream.publish(make_wheel("libc", "0.2"))
    upstream.yank("libc", "0.2", reason="broken")
    upstream.publish(make_wheel("native", "1.0", tag=LINUX_39))
    upstream.publish(make_wheel("native", "1.0", tag="cp312-cp312-win_amd64"))
    return upstream


def page(index: RunningIndex, project: str, accept: str = JSON) -> requests.Response:
    response = requests.get(f"{index.simple_url}{project}/", headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200, (project, response.status_code, response.text)
    return response


def cache_everything(index: RunningIndex, *projects: str) -> None:
    """Download every file and metadata file the pages list, so all of it is cached."""
    for project in projects:
        response = page(index, project)
        for entry in response.json()["files"]:
            url = urljoin(response.url, entry["url"])
            assert requests.get(url, timeout=30).status_code == 200
            if entry.get("core-metadata"):
                assert requests.get(url + ".metadata", timeout=30).status_code == 200


def upload_private(index: RunningIndex, wheel: Dist | None = None) -> None:
    """Alice uploads a private project (by default acme-utils, depending on a cached one)."""
    engine = get_engine(index.settings.database_url)
    try:
        Accounts(Database(engine)).add_user("alice", PASSWORD)
    finally:
        engine.dispose()
    wheel = wheel or make_wheel("acme-utils", "1.0", requires_dist=["libc"])
    fields = form_fields(wheel)
    response = post_upload(
        index.url + "/legacy/", ("alice", PASSWORD), fields, wheel.filename, wheel.content
    )
    assert response.status_code == 200, response.text


def stored(index: RunningIndex) -> set[str]:
    return {p.name for p in index.settings.blob_dir.rglob("*") if p.is_file()}


def database(index: RunningIndex) -> dict[str, list[tuple[object, ...]]]:
    """Every project and file row (ids aside) and the audit log: what an import may change."""
    engine = get_engine(index.settings.database_url)
    try:
        with Database(engine).unit_of_work() as db:
            projects = [
                (p.name, p.display_name, p.last_serial, p.versions, p.status, p.private,
                 p.merge_upstream, p.checked_at, p.upstream_etag)
                for p in db.scalars(select(Project).order_by(Project.name))
            ]  # fmt: skip
            files = [
                (f.project.name, f.filename, f.version, f.sha256, f.size, f.requires_python,
                 f.yanked, f.yanked_reason, f.upload_time, f.has_metadata, f.metadata_sha256,
                 f.origin, f.cached_at)
                for f in db.scalars(select(File).order_by(File.filename))
            ]  # fmt: skip
            audit = [(a.action, a.project, a.filename) for a in db.scalars(select(AuditEntry))]
            return {"projects": projects, "files": files, "audit": audit}
    finally:
        engine.dispose()


def manifest(bundle: Path) -> dict:
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        return json.loads(handle.read())


def installed(python: Path) -> dict[str, str]:
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    return dict(
        d.name.removesuffix(".dist-info").rsplit("-", 1)  # type: ignore[misc]
        for d in site.glob("*.dist-info")
    )


def test_export_projects_and_import_them_into_an_index_without_upstream(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    source = make_index(tree.simple_url, name="source")
    upload_private(source)
    projects = (*UPSTREAM_PROJECTS, "acme-utils")
    cache_everything(source, *projects)
    bundle = tmp_path / "bundle.tar"

    exported = run_pypicache(
        source.settings, "export", *[f"--project={p}" for p in projects], bundle
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "skipped" not in exported.stdout
    assert "export: 5 projects, 9 files, 17 blobs" in exported.stdout
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert set(names[1:]) == {f"blobs/{sha256}" for sha256 in stored(source)}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    data = manifest(bundle)
    assert data["format"] == "pypicache-bundle"
    assert data["source-upstream"] == tree.simple_url
    libc = next(p for p in data["projects"] if p["name"] == "libc")
    yanked = next(f for f in libc["files"] if f["version"] == "0.2")
    assert (yanked["yanked"], yanked["yanked-reason"]) == (True, "broken")

    tree.stop()
    offline = make_index(None, name="offline")
    imported = run_pypicache(offline.settings, "import", bundle)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "5 projects (5 created, 0 updated, 0 unchanged)" in imported.stdout
    assert "9 files (9 added, 0 updated, 0 unchanged)" in imported.stdout
    assert stored(offline) == stored(source)

    for project in projects:
        for accept in (JSON, HTML):
            theirs, ours = page(source, project, accept), page(offline, project, accept)
            assert ours.content == theirs.content, project
            for header in ("X-PyPI-Last-Serial", "ETag", "Cache-Control"):
                assert ours.headers.get(header) == theirs.headers.get(header), (project, header)
        for entry in page(offline, project).json()["files"]:
            url = f"{offline.url}/packages/{project}/{entry['filename']}"
            assert (
                requests.get(url, timeout=30).content
                == requests.get(
                    f"{source.url}/packages/{project}/{entry['filename']}", timeout=30
                ).content
            )
    private = {row[0]: row for row in database(offline)["projects"]}["acme-utils"]
    assert private[5] is True, "still private"
    assert {f[11] for f in database(offline)["files"] if f[0] == "acme-utils"} == {"private"}

    for installer in (pip_install, uv_pip_install):
        venv = tmp_path / installer.__name__
        done = installer(make_venv(venv), offline.simple_url, "app", "acme-utils")
        assert done.returncode == 0, done.stderr
        assert installed(venv / "bin" / "python") == {**EXPECTED, "acme_utils": "1.0"}

    before, blobs = database(offline), stored(offline)
    again = run_pypicache(offline.settings, "import", bundle)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "5 projects (0 created, 0 updated, 5 unchanged)" in again.stdout
    assert "0 blobs stored (0 B), 17 already stored; nothing changed" in again.stdout
    assert database(offline) == before
    assert stored(offline) == blobs


def test_export_requirements_exports_what_pip_chose_for_the_target(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    source = make_index(tree.simple_url, name="source")
    (tmp_path / "requirements.txt").write_text("app\n")
    (tmp_path / "native.txt").write_text("native\n")
    bundle, native = tmp_path / "app.tar", tmp_path / "native.tar"

    exported = run_pypicache(source.settings, "export", "-r", tmp_path / "requirements.txt", bundle)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "4 fetched" in exported.stdout
    data = manifest(bundle)
    assert {p["name"]: [f["filename"] for f in p["files"]] for p in data["projects"]} == {
        name: [make_wheel(name, version).filename] for name, version in EXPECTED.items()
    }
    libb = next(p for p in data["projects"] if p["name"] == "libb")
    assert libb["versions"] == ["2.1", "3.0"], "the project's page entry, all versions"

    exported = run_pypicache(
        source.settings, "export", "--requirements", tmp_path / "native.txt",
        "--python-version", "3.9", "--platform", "manylinux_2_17_x86_64", native,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    [project] = manifest(native)["projects"]
    assert [f["filename"] for f in project["files"]] == [
        make_wheel("native", "1.0", tag=LINUX_39).filename
    ]

    tree.stop()
    offline = make_index(None, name="offline")
    for path in (bundle, native):
        imported = run_pypicache(offline.settings, "import", path)
        assert imported.returncode == 0, imported.stdout + imported.stderr

    for installer in (pip_install, uv_pip_install):
        venv = tmp_path / installer.__name__
        done = installer(make_venv(venv), offline.simple_url, "app")
        assert done.returncode == 0, done.stderr
        assert installed(venv / "bin" / "python") == EXPECTED
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--dest", tmp_path / "wheels",
         "--index-url", offline.simple_url, "--python-version", "3.9",
         "--platform", "manylinux_2_17_x86_64", "--only-binary=:all:", "native"],
        capture_output=True, text=True, env=clean_client_env(), timeout=300,
    )  # fmt: skip
    assert download.returncode == 0, download.stderr


def tampered(bundle: Path, out: Path) -> str:
    """A copy of ``bundle`` with one byte of one blob changed; returns that blob's name."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w") as target:
        victim = next(m for m in source.getmembers() if m.name.startswith("blobs/"))
        for member in source.getmembers():
            handle = source.extractfile(member)
            assert handle is not None
            content = handle.read()
            if member is victim:
                content = bytes([content[0] ^ 0xFF]) + content[1:]
            target.addfile(member, io.BytesIO(content))
    return victim.name


def test_a_tampered_bundle_is_refused_and_nothing_is_stored(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    source = make_index(tree.simple_url, name="source")
    cache_everything(source, "libc", "liba")
    bundle, bad = tmp_path / "bundle.tar", tmp_path / "bad.tar"
    exported = run_pypicache(
        source.settings, "export", "--project", "liba", "--project", "libc", bundle
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    blob = tampered(bundle, bad)

    offline = make_index(None, name="offline")
    before = database(offline)
    refused = run_pypicache(offline.settings, "import", bad)
    assert refused.returncode == 1
    assert "is corrupt" in refused.stderr
    assert blob.removeprefix("blobs/") in refused.stderr
    assert "nothing was imported" in refused.stderr
    assert stored(offline) == set()
    assert database(offline) == before
    assert not [p for p in offline.settings.tmp_dir.iterdir()], "no temp file left behind"

    imported = run_pypicache(offline.settings, "import", bundle)
    assert imported.returncode == 0, imported.stdout + imported.stderr


def test_export_of_an_unknown_project_writes_nothing(make_index: IndexFactory, tmp_path: Path):
    index = make_index(None)
    result = run_pypicache(index.settings, "export", "--project", "nowhere", tmp_path / "b.tar")
    assert result.returncode == 1
    assert "nowhere is not in the cache" in result.stderr
    assert list(tmp_path.glob("*.tar*")) == []


def test_import_leaves_what_conflicts_alone_and_says_so(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    source = make_index(tree.simple_url, name="source")
    cache_everything(source, "libc", "liba")
    bundle = tmp_path / "bundle.tar"
    exported = run_pypicache(source.settings, "export", "--project=libc", "--project=liba", bundle)
    assert exported.returncode == 0, exported.stdout + exported.stderr

    # Importing into the exporting index itself: everything is there already.
    same = run_pypicache(source.settings, "import", bundle)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "nothing changed" in same.stdout

    # Here libc is a private project: the bundle's upstream libc must not replace it.
    offline = make_index(None, name="offline")
    upload_private(offline, make_wheel("libc", "5.0"))
    private_page = page(offline, "libc").content
    imported = run_pypicache(offline.settings, "import", bundle)
    assert imported.returncode == 1
    assert "conflict  libc: private here but not in the bundle; left as it is" in imported.stdout
    assert "1 created" in imported.stdout, "liba is imported all the same"
    assert page(offline, "libc").content == private_page
    assert page(offline, "liba").status_code == 200


def test_export_skips_what_is_not_cached_and_carries_a_wheels_own_metadata(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    source = make_index(tree.simple_url, name="source")
    wheel = make_wheel("libc", "0.1")
    page(source, "libc")
    # Only the wheel: nobody asked for its core metadata, nor for libc 0.2.
    assert requests.get(f"{source.url}/packages/libc/{wheel.filename}", timeout=30).ok
    assert wheel.metadata_sha256 not in stored(source)
    bundle = tmp_path / "bundle.tar"

    exported = run_pypicache(source.settings, "export", "--project", "libc", bundle)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "skipped libc/libc-0.2-py3-none-any.whl: not cached" in exported.stdout
    assert "1 files, 2 blobs" in exported.stdout

    offline = make_index(None, name="offline")
    imported = run_pypicache(offline.settings, "import", bundle)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    [entry] = page(offline, "libc").json()["files"]
    assert entry["core-metadata"] == {"sha256": wheel.metadata_sha256}
    metadata = requests.get(f"{offline.url}/packages/libc/{wheel.filename}.metadata", timeout=30)
    assert metadata.content == wheel.metadata
