"""Snapshots: /snapshot/<time>/simple/ and /i/<index>/snapshot/<time>/simple/, the index as
it was at a time, for pip and uv."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
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
from tests.support.privatedb import JSON, PASSWORD, Db, admin_cli, pypicache_cli
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until


def moment(delta: timedelta) -> str:
    """An RFC 3339 time ``delta`` from now, as a snapshot URL takes it."""
    return format_moment(datetime.now(UTC).replace(tzinfo=None) + delta)


def snapshot_url(index: RunningIndex, when: str, named: str | None = None) -> str:
    where = f"/i/{named}" if named else ""
    return f"{index.url}{where}/snapshot/{when}/simple/"


def page(url: str, project: str, accept: str = JSON) -> requests.Response:
    return requests.get(f"{url}{project}/", headers={"Accept": accept}, timeout=30)


def filenames(url: str, project: str) -> list[str]:
    response = page(url, project)
    assert response.status_code == 200, response.text
    return sorted(f["filename"] for f in response.json()["files"])


def file_url(simple_url: str, dist: Dist) -> str:
    return f"{simple_url.removesuffix('simple/')}packages/{dist.name}/{dist.filename}"


def published(upstream: FakeUpstream, name: str, *versions: tuple[str, timedelta]) -> list[Dist]:
    """Releases of ``name``, each uploaded the given time ago."""
    now = datetime.now(UTC)
    dists = []
    for version, age in versions:
        dist = make_wheel(name, version)
        upstream.publish(dist, upload_time=now - age)
        dists.append(dist)
    return dists


DAYS_30, DAYS_10 = timedelta(days=30), timedelta(days=10)


def test_a_time_between_two_releases_installs_the_older_one_through_the_snapshot(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    old, new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", DAYS_10))
    snapshot = snapshot_url(index, moment(-timedelta(days=20)))

    data = page(snapshot, "lib").json()
    assert [f["filename"] for f in data["files"]] == [old.filename]
    assert data["versions"] == ["1.0"], "a version left with no files leaves the list"
    html = page(snapshot, "lib", "text/html").text
    assert old.filename in html
    assert new.filename not in html
    assert filenames(index.simple_url, "lib") == [old.filename, new.filename], "live: both"
    listing = requests.get(snapshot, headers={"Accept": JSON}, timeout=30)
    assert [p["name"] for p in listing.json()["projects"]] == ["lib"], "the index's own list"

    upstream.clear_log()
    python = make_venv(tmp_path / "uv")
    result = uv_pip_install(python, snapshot, "lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"lib": "1.0"}
    python = make_venv(tmp_path / "pip")
    result = pip_install(python, snapshot, "lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"lib": "1.0"}
    assert upstream.count(path_contains=new.filename) == 0, "nothing fetched of 2.0"


def test_a_pinned_install_of_a_newer_file_through_the_snapshot_fails_with_a_404(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    _old, new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", DAYS_10))
    when = moment(-timedelta(days=20))
    snapshot = snapshot_url(index, when)
    uploaded = format_moment((datetime.now(UTC) - DAYS_10).replace(tzinfo=None))[:13]
    for url in (file_url(snapshot, new), file_url(snapshot, new) + ".metadata"):
        response = requests.get(url, timeout=30)
        assert response.status_code == 404
        assert response.text.count("\n") == 1, "one line"
        assert f"{new.filename} was uploaded {uploaded}" in response.text
        assert f"after the snapshot's time {when}" in response.text
    assert requests.get(file_url(index.simple_url, new), timeout=30).status_code == 200

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"lib @ {file_url(snapshot, new)} --hash=sha256:{new.sha256}\n")
    python = make_venv(tmp_path / "pip")
    result = pip_install(python, snapshot, "--require-hashes", "-r", str(requirements))
    assert result.returncode != 0
    assert "404" in result.stdout + result.stderr
    python = make_venv(tmp_path / "uv")
    result = uv_pip_install(python, snapshot, "-r", str(requirements))
    assert result.returncode != 0
    assert "404" in result.stderr
    assert installed(python) == {}


def uv_lock(tmp_path: Path, index_url: str) -> str:
    """``uv lock`` of a project that needs lib, from ``index_url``; the lock file's text."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.8"\n'
        'dependencies = ["lib"]\n\n[tool.uv]\npackage = false\n\n'
        f'[[tool.uv.index]]\nname = "company"\nurl = "{index_url}"\ndefault = true\n'
    )
    env = clean_client_env()
    env.pop("UV_NO_CONFIG", None)  # the project's pyproject.toml is the config here
    result = subprocess.run(
        [find_uv(), "lock", "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return (project / "uv.lock").read_text()


def test_a_lock_made_through_a_snapshot_pins_what_the_index_had_then(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    old, _new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", DAYS_10))
    snapshot = snapshot_url(index, moment(-timedelta(days=20)))
    lock = uv_lock(tmp_path, snapshot)
    assert 'version = "1.0"' in lock
    assert file_url(snapshot, old) in lock, "its files download through the snapshot"


@pytest.mark.parametrize(
    "when",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-12-01T00:00:00", "2026-02-30T00:00:00Z"],
)
def test_a_bad_time_is_a_400_naming_it(index: RunningIndex, upstream: FakeUpstream, when: str):
    (dist,) = published(upstream, "lib", ("1.0", DAYS_30))
    assert page(index.simple_url, "lib").status_code == 200
    index_create = pypicache_cli(index, "index", "create", "prod", "--bases", "main")
    assert index_create.returncode == 0, index_create.stderr
    for snapshot in (snapshot_url(index, when), snapshot_url(index, when, "prod")):
        for url in (snapshot, f"{snapshot}lib/", file_url(snapshot, dist)):
            response = requests.get(url, headers={"Accept": JSON}, timeout=30)
            assert response.status_code == 400, url
            assert response.text.count("\n") == 1, "one line"
            assert response.text.startswith(f"400 Bad Request: snapshot time {when!r}")


def test_a_time_in_the_future_is_todays_page(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    _old, new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", timedelta(minutes=1)))
    snapshot = snapshot_url(index, moment(timedelta(days=1)))
    for accept in (JSON, "text/html"):
        live, future = page(index.simple_url, "lib", accept), page(snapshot, "lib", accept)
        assert future.status_code == 200
        assert future.content == live.content
        assert future.headers["ETag"] == live.headers["ETag"]
    response = requests.get(file_url(snapshot, new), timeout=30)
    assert response.status_code == 200
    assert response.content == new.content


def test_equal_moments_spelled_differently_are_one_snapshot(
    index: RunningIndex, upstream: FakeUpstream
):
    old, _new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", DAYS_10))
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    spellings = [
        format_moment(when.replace(tzinfo=None)),
        when.astimezone(timezone(timedelta(hours=2))).isoformat(),
        when.astimezone(timezone(-timedelta(hours=5))).isoformat().replace("T", " "),
    ]
    responses = [page(snapshot_url(index, spelled), "lib") for spelled in spellings]
    assert all(r.status_code == 200 for r in responses)
    assert {r.headers["ETag"] for r in responses} == {responses[0].headers["ETag"]}
    assert [f["filename"] for f in responses[0].json()["files"]] == [old.filename]


def test_a_name_to_normalize_redirects_within_the_snapshot(
    index: RunningIndex, upstream: FakeUpstream
):
    published(upstream, "my-lib", ("1.0", DAYS_30))
    snapshot = snapshot_url(index, moment(-timedelta(days=1)))
    response = requests.get(f"{snapshot}My_Lib/", allow_redirects=False, timeout=30)
    assert response.status_code == 301
    assert response.headers["Location"].endswith(snapshot.removeprefix(index.url) + "my-lib/")


def test_the_cooldown_still_applies_in_a_snapshot(make_index: IndexFactory, upstream: FakeUpstream):
    cooling = make_index(upstream.simple_url, **{"pypicache.cooldown": "7d"})
    old, young = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", timedelta(hours=1)))
    for when in (moment(-timedelta(minutes=30)), moment(timedelta(days=1))):
        snapshot = snapshot_url(cooling, when)
        assert filenames(snapshot, "lib") == [old.filename], when
        response = requests.get(file_url(snapshot, young), timeout=30)
        assert response.status_code == 403
        assert "held by the 7d cooldown" in response.text


def test_a_named_index_snapshot_holds_its_private_packages_to_their_upload_time(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    old, _new = published(upstream, "lib", ("1.0", DAYS_30), ("2.0", DAYS_10))
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    created = pypicache_cli(
        index, "index", "create", "team", "--bases", "main", "--uploaders", "alice"
    )
    assert created.returncode == 0, created.stderr
    before = moment(-timedelta(seconds=1))
    own = make_wheel("teamlib", "1.0", requires_dist=["lib"])
    (tmp_path / own.filename).write_bytes(own.content)
    result = twine_upload(f"{index.url}/i/team/legacy/", "alice", PASSWORD, tmp_path / own.filename)
    assert result.returncode == 0, result.stdout + result.stderr

    then = snapshot_url(index, before, "team")
    assert filenames(then, "teamlib") == [], "uploaded after the snapshot's time"
    assert requests.get(file_url(then, own), timeout=30).status_code == 404
    # Twenty days ago lib, from the base, was at 1.0 and teamlib had no files yet.
    earlier = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    assert filenames(snapshot_url(index, earlier, "team"), "lib") == [old.filename]
    # Now, to the microsecond: the upload is in, and lib is at 2.0.
    now = snapshot_url(index, datetime.now(UTC).isoformat(), "team")
    assert filenames(now, "teamlib") == [own.filename]
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, now, "teamlib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"teamlib": "1.0", "lib": "2.0"}


def test_a_named_index_that_needs_a_login_needs_it_for_its_snapshots(
    index: RunningIndex, upstream: FakeUpstream
):
    (dist,) = published(upstream, "lib", ("1.0", DAYS_30))
    db = Db(index)
    db.accounts.add_user("bob", PASSWORD)
    db.engine.dispose()
    created = pypicache_cli(index, "index", "create", "secret", "--bases", "main", "--read-auth")
    assert created.returncode == 0, created.stderr
    snapshot = snapshot_url(index, moment(-timedelta(days=1)), "secret")
    for url in (snapshot, f"{snapshot}lib/", file_url(snapshot, dist)):
        assert requests.get(url, timeout=30).status_code == 401, url
        assert requests.get(url, auth=("bob", PASSWORD), timeout=30).status_code == 200, url


def test_a_snapshot_shows_the_yank_state_pypicache_knows_now(index: RunningIndex, tmp_path: Path):
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    own = make_wheel("steady-lib", "1.0")
    (tmp_path / own.filename).write_bytes(own.content)
    result = twine_upload(f"{index.url}/legacy/", "alice", PASSWORD, tmp_path / own.filename)
    assert result.returncode == 0, result.stdout + result.stderr
    snapshot = snapshot_url(index, datetime.now(UTC).isoformat())
    assert "yanked" not in page(snapshot, "steady-lib").json()["files"][0]

    assert admin_cli(index, "yank", "steady-lib", "1.0", "--reason", "oops").returncode == 0
    assert wait_until(
        lambda: page(snapshot, "steady-lib").json()["files"][0].get("yanked") == "oops"
    )
    assert requests.get(file_url(snapshot, own), timeout=30).content == own.content
