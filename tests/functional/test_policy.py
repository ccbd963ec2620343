"""Supply-chain rules applied when answering: cooldown, cutoff, blocks, allowlists, grants."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pypicache.times import format_moment
from tests.conftest import IndexFactory, RunningIndex
from tests.support.clients import (
    clean_client_env,
    find_uv,
    installed,
    make_venv,
    pip_install,
    uv_pip_install,
)
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import JSON, PASSWORD, Db, pypicache_cli, upload_url
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=30)
YOUNG = NOW - timedelta(hours=1)


def policy(index: RunningIndex, *args: str) -> str:
    result = pypicache_cli(index, "policy", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def page(index: RunningIndex, project: str, base: str | None = None) -> requests.Response:
    return requests.get(
        f"{base or index.simple_url}{project}/", headers={"Accept": JSON}, timeout=30
    )


def filenames(index: RunningIndex, project: str, base: str | None = None) -> list[str]:
    response = page(index, project, base)
    assert response.status_code == 200, response.text
    return sorted(f["filename"] for f in response.json()["files"])


def file_url(index: RunningIndex, dist: Dist, base: str | None = None) -> str:
    root = (base or index.simple_url).removesuffix("simple/")
    return f"{root}packages/{dist.name}/{dist.filename}"


def published(upstream: FakeUpstream, name: str, *versions: tuple[str, datetime]) -> list[Dist]:
    dists = []
    for version, uploaded in versions:
        dist = make_wheel(name, version)
        upstream.publish(dist, upload_time=uploaded)
        dists.append(dist)
    return dists


@pytest.fixture
def cooling(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    return make_index(upstream.simple_url, **{"pypicache.cooldown": "7d"})


def test_the_cooldown_leaves_young_files_out_and_installers_take_the_newest_mature(
    cooling: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    old, young = published(upstream, "lib", ("1.0", OLD), ("2.0", YOUNG))

    response = page(cooling, "lib")
    data = response.json()
    assert [f["filename"] for f in data["files"]] == [old.filename]
    assert data["versions"] == ["1.0"], "a version left with no files leaves the list"
    # The true upload time stays, so a client's own limit still stacks on ours.
    assert data["files"][0]["upload-time"].startswith(OLD.strftime("%Y-%m-%dT%H:%M:%S"))
    html = requests.get(cooling.simple_url + "lib/", timeout=30).text
    assert old.filename in html
    assert young.filename not in html

    python = make_venv(tmp_path / "uv")
    result = uv_pip_install(python, cooling.simple_url, "lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"lib": "1.0"}
    python = make_venv(tmp_path / "pip")
    result = pip_install(python, cooling.simple_url, "lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"lib": "1.0"}


def test_a_held_file_and_its_metadata_answer_403_naming_when_they_become_available(
    cooling: RunningIndex, upstream: FakeUpstream
):
    (young,) = published(upstream, "lib", ("2.0", YOUNG))
    assert filenames(cooling, "lib") == []
    matures = format_moment((YOUNG + timedelta(days=7)).replace(tzinfo=None))
    for url in (file_url(cooling, young), file_url(cooling, young) + ".metadata"):
        response = requests.get(url, timeout=30)
        assert response.status_code == 403
        assert response.text.count("\n") == 1, "one line"
        assert f"held by the 7d cooldown until {matures}" in response.text
    assert upstream.count(path_contains=young.filename) == 0, "nothing was fetched for it"


def test_a_page_is_never_cached_by_clients_past_the_moment_a_held_file_matures(
    cooling: RunningIndex, upstream: FakeUpstream
):
    soon = datetime.now(UTC) - timedelta(days=7) + timedelta(seconds=40)
    published(upstream, "lib", ("1.0", OLD), ("1.1", soon))
    response = page(cooling, "lib")
    max_age = int(re.search(r"max-age=(\d+)", response.headers["Cache-Control"]).group(1))
    assert 0 < max_age <= 40
    assert wait_until(lambda: len(filenames(cooling, "lib")) == 2, timeout=60), "it matured"


def test_a_pinned_install_of_a_held_file_fails_with_the_403(
    cooling: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    (young,) = published(upstream, "lib", ("2.0", YOUNG))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"lib @ {file_url(cooling, young)} --hash=sha256:{young.sha256}\n")
    python = make_venv(tmp_path / "pip")
    result = pip_install(python, cooling.simple_url, "--require-hashes", "-r", str(requirements))
    assert result.returncode != 0
    assert "403" in result.stdout + result.stderr
    python = make_venv(tmp_path / "uv")
    result = uv_pip_install(python, cooling.simple_url, "-r", str(requirements))
    assert result.returncode != 0
    assert "403" in result.stderr
    assert installed(python) == {}


def uv_project(tmp_path: Path, index_url: str) -> Path:
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.8"\n'
        'dependencies = ["lib"]\n\n[tool.uv]\npackage = false\n\n'
        f'[[tool.uv.index]]\nname = "company"\nurl = "{index_url}"\ndefault = true\n'
    )
    return project


def uv(project: Path, *args: str, python: Path) -> subprocess.CompletedProcess[str]:
    env = clean_client_env()
    env.pop("UV_NO_CONFIG", None)  # the project's pyproject.toml is the config here
    return subprocess.run(
        [find_uv(), *args, "--no-cache", "--python", str(python)],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_block_made_while_serving_stops_a_frozen_lock_file_install_at_once(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    old, bad = published(upstream, "lib", ("1.0", OLD), ("2.0", OLD))
    project = uv_project(tmp_path, index.simple_url)
    python = make_venv(tmp_path / "py")
    locked = uv(project, "lock", python=python)
    assert locked.returncode == 0, locked.stderr
    assert 'version = "2.0"' in (project / "uv.lock").read_text()

    made = policy(index, "block", "lib==2.0", "--reason", "compromised release, see INC-7")
    rule = re.search(r"made rule (\d+)", made).group(1)
    assert wait_until(lambda: filenames(index, "lib") == [old.filename], timeout=15)
    response = requests.get(file_url(index, bad), timeout=30)
    assert response.status_code == 403
    assert f"is blocked by rule {rule} (lib==2.0): compromised release, see INC-7" in response.text

    synced = uv(project, "sync", "--frozen", python=python)
    assert synced.returncode != 0
    assert "403" in synced.stderr

    policy(index, "revoke", rule)
    assert wait_until(lambda: len(filenames(index, "lib")) == 2, timeout=15)
    synced = uv(project, "sync", "--frozen", python=python)
    assert synced.returncode == 0, synced.stderr


def test_two_hosts_apply_the_rule_one_of_them_made(
    make_index: IndexFactory, upstream: FakeUpstream, fresh_database_url
):
    url = fresh_database_url()
    one = make_index(upstream.simple_url, name="one", **{"sqlalchemy.url": url})
    other = make_index(upstream.simple_url, name="other", **{"sqlalchemy.url": url})
    published(upstream, "evilpkg", ("1.0", OLD))
    assert filenames(other, "evilpkg") == ["evilpkg-1.0-py3-none-any.whl"], "cached, hot"

    policy(one, "block", "evilpkg", "--reason", "typosquat")
    for host in (one, other):
        assert wait_until(lambda h=host: filenames(h, "evilpkg") == [], timeout=15)


def test_exemptions_and_release_grants_let_young_files_through_until_revoked(
    make_index: IndexFactory, upstream: FakeUpstream
):
    index = make_index(
        upstream.simple_url,
        **{"pypicache.cooldown": "7d", "pypicache.cooldown_exempt": "internal-*"},
    )
    published(upstream, "internal-tools", ("1.0", YOUNG))
    published(upstream, "urgent", ("1.0", OLD), ("1.1", YOUNG))
    assert filenames(index, "internal-tools") == ["internal_tools-1.0-py3-none-any.whl"]
    assert filenames(index, "urgent") == ["urgent-1.0-py3-none-any.whl"]

    made = policy(index, "allow-release", "Urgent==1.1", "--reason", "fixes CVE-2026-1")
    rule = re.search(r"made rule (\d+)", made).group(1)
    assert wait_until(lambda: len(filenames(index, "urgent")) == 2, timeout=15)
    listing = policy(index, "list")
    assert f"{rule}  allow-release urgent==1.1 on every index: fixes CVE-2026-1 (cli" in listing

    policy(index, "revoke", rule)
    assert wait_until(lambda: len(filenames(index, "urgent")) == 1, timeout=15)
    assert "[ended" in policy(index, "list", "--all")


def test_the_cutoff_holds_whatever_was_uploaded_after_it(
    make_index: IndexFactory, upstream: FakeUpstream
):
    cutoff = NOW - timedelta(days=10)
    index = make_index(
        upstream.simple_url, **{"pypicache.cutoff": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    before, after = published(upstream, "lib", ("1.0", OLD), ("1.1", NOW - timedelta(days=9)))
    assert filenames(index, "lib") == [before.filename]
    response = requests.get(file_url(index, after), timeout=30)
    assert response.status_code == 403
    assert "after the cutoff" in response.text


def test_a_file_without_an_upload_time_ages_from_when_pypicache_first_saw_it(
    cooling: RunningIndex, upstream: FakeUpstream
):
    upstream.html_only = True  # a static index: no upload-time at all
    published(upstream, "static", ("1.0", OLD))
    assert filenames(cooling, "static") == [], "first seen a moment ago"


def test_private_packages_are_exempt_unless_the_deployment_says_otherwise(
    make_index: IndexFactory, upstream: FakeUpstream, tmp_path: Path
):
    for hold_private in ("false", "true"):
        index = make_index(
            upstream.simple_url,
            name=f"private-{hold_private}",
            **{"pypicache.cooldown": "1d", "pypicache.cooldown_private": hold_private},
        )
        db = Db(index)
        db.accounts.add_user("alice", PASSWORD)
        db.engine.dispose()
        dist = make_wheel("ourlib", "1.0")
        path = tmp_path / hold_private / dist.filename
        path.parent.mkdir()
        path.write_bytes(dist.content)
        result = twine_upload(upload_url(index), "alice", PASSWORD, path)
        assert result.returncode == 0, result.stdout + result.stderr
        shown = filenames(index, "ourlib")
        assert shown == ([] if hold_private == "true" else [dist.filename])


def test_an_allowlist_serves_only_matching_upstream_projects(
    index: RunningIndex, upstream: FakeUpstream
):
    published(upstream, "acme-core", ("1.0", OLD))
    published(upstream, "leftpad", ("1.0", OLD))
    assert filenames(index, "leftpad") == ["leftpad-1.0-py3-none-any.whl"]
    policy(index, "allow-only", "acme-*", "requests")
    assert wait_until(lambda: page(index, "leftpad").status_code == 404, timeout=15)
    response = page(index, "leftpad")
    assert "leftpad is not on the allowlist of index main" in response.text
    assert filenames(index, "acme-core") == ["acme_core-1.0-py3-none-any.whl"]
    download = requests.get(file_url(index, make_wheel("leftpad", "1.0")), timeout=30)
    assert download.status_code == 404


def test_an_index_sets_its_own_cooldown_and_one_upstream_alone_keeps_the_default(
    index: RunningIndex, upstream: FakeUpstream
):
    old, young = published(upstream, "lib", ("1.0", OLD), ("2.0", YOUNG))
    result = pypicache_cli(index, "index", "create", "prod", "--bases", "main", "--cooldown", "3d")
    assert result.returncode == 0, result.stderr
    prod = f"{index.url}/i/prod/simple/"
    assert wait_until(lambda: page(index, "lib", prod).status_code == 200, timeout=15)
    assert filenames(index, "lib", prod) == [old.filename]
    assert filenames(index, "lib") == [old.filename, young.filename], "main has none"
    assert len(filenames(index, "lib", f"{index.url}/u/pypi/simple/")) == 2
    assert requests.get(file_url(index, young, prod), timeout=30).status_code == 403
    assert requests.get(file_url(index, young), timeout=30).status_code == 200


def test_bad_rules_and_settings_are_refused_with_a_reason(
    index: RunningIndex, make_index: IndexFactory
):
    result = pypicache_cli(index, "policy", "block", "lib; os_name=='nt'", "--reason", "x")
    assert result.returncode == 1
    assert "a block names a project and versions only" in result.stderr
    result = pypicache_cli(index, "policy", "allow-release", "lib>=1", "--reason", "x")
    assert "is not PROJECT==VERSION" in result.stderr
    result = pypicache_cli(index, "policy", "block", "lib", "--reason", "x", "--index", "nope")
    assert "there is no index named 'nope'" in result.stderr
    with pytest.raises(Exception, match=r"pypicache\.cooldown: '7 days' is not a duration"):
        make_index(None, name="bad", **{"pypicache.cooldown": "7 days"})
