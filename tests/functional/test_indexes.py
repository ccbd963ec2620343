"""Named indexes: bases in order, private projects of their own, uploaders, the commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import select

from pypicache.models import AuditEntry
from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.clients import installed, make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import JSON, PASSWORD, Db, pypicache_cli, upload_url
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream) -> Iterator[tuple[RunningIndex, Db]]:
    index = make_index(upstream.simple_url)
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("bob", PASSWORD)
    yield index, db
    db.engine.dispose()


def cli(index: RunningIndex, *args: str) -> str:
    result = pypicache_cli(index, "index", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(index: RunningIndex, *args: str) -> str:
    result = pypicache_cli(index, "index", *args)
    assert result.returncode == 1, result.stdout
    return result.stderr


def upload(index: RunningIndex, url: str, user: str, dist: Dist, tmp_path: Path):
    path = tmp_path / dist.filename
    path.write_bytes(dist.content)
    return twine_upload(url, user, PASSWORD, path)


def index_url(index: RunningIndex, name: str) -> str:
    return f"{index.url}/i/{name}/"


def filenames(url: str) -> list[str] | int:
    """The files of a JSON project page, or the status when there is none."""
    response = requests.get(url, headers={"Accept": JSON}, timeout=30)
    if response.status_code != 200:
        return response.status_code
    return sorted(f["filename"] for f in response.json()["files"])


def test_an_index_serves_its_own_private_projects_over_its_bases(site, upstream, tmp_path):
    index, db = site
    upstream.publish(make_wheel("public", "1.0"))
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    team = index_url(index, "team")

    own = make_wheel("teamlib", "1.0")
    result = upload(index, team + "legacy/", "alice", own, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    assert filenames(team + "simple/teamlib/") == [own.filename]
    assert filenames(team + "simple/public/") == ["public-1.0-py3-none-any.whl"]
    assert filenames(index.simple_url + "teamlib/") == 404, "main has no such project"
    response = requests.get(team + "simple/teamlib/", headers={"Accept": JSON}, timeout=30)
    file_url = requests.compat.urljoin(response.url, response.json()["files"][0]["url"])
    assert file_url.startswith(team + "packages/")
    assert requests.get(file_url, timeout=30).content == own.content

    listed = requests.get(team + "simple/", headers={"Accept": JSON}, timeout=30).json()
    assert {"teamlib", "public"} <= {p["name"] for p in listed["projects"]}
    with db.database.unit_of_work() as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[:2] == ["index-create", "claim"]


def test_only_admins_and_the_uploaders_upload_to_an_index(site, upstream, tmp_path):
    index, _db = site
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    cli(index, "create", "locked")  # no uploaders: admins only
    legacy = index_url(index, "team") + "legacy/"

    denied = upload(index, legacy, "bob", make_wheel("bobs", "1.0"), tmp_path)
    assert denied.returncode != 0
    assert "isn't allowed to upload to the index 'team'" in denied.stdout + denied.stderr
    assert upload(index, legacy, "root", make_wheel("roots", "1.0"), tmp_path).returncode == 0
    locked = index_url(index, "locked") + "legacy/"
    assert upload(index, locked, "alice", make_wheel("alices", "1.0"), tmp_path).returncode != 0
    assert upload(index, locked, "root", make_wheel("alices", "1.0"), tmp_path).returncode == 0
    # An index nobody created: 404 for reads and uploads alike.
    assert filenames(index_url(index, "nosuch") + "simple/x/") == 404
    nosuch = upload(
        index, index_url(index, "nosuch") + "legacy/", "root", make_wheel("x", "1"), tmp_path
    )
    assert nosuch.returncode != 0


def test_a_private_project_shadows_the_name_in_every_base_below_it(site, upstream, tmp_path):
    index, _db = site
    upstream.publish(make_wheel("shared", "5.0"))
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    cli(index, "create", "stage", "--bases", "team,main")
    team = index_url(index, "team")

    # The name is the upstream's: only an admin may shadow it, in this index too.
    ours = make_wheel("shared", "1.0")
    denied = upload(index, team + "legacy/", "alice", ours, tmp_path)
    assert "only an admin" in denied.stdout + denied.stderr
    assert upload(index, team + "legacy/", "root", ours, tmp_path).returncode == 0

    assert filenames(team + "simple/shared/") == [ours.filename]
    assert filenames(index_url(index, "stage") + "simple/shared/") == [ours.filename]
    assert filenames(index.simple_url + "shared/") == ["shared-5.0-py3-none-any.whl"]

    # A name the index main made private is private in every index above it.
    mains = make_wheel("mainonly", "1.0")
    assert upload(index, upload_url(index), "alice", mains, tmp_path).returncode == 0
    assert filenames(index_url(index, "stage") + "simple/mainonly/") == [mains.filename]
    clash = upload(index, team + "legacy/", "alice", make_wheel("mainonly", "2.0"), tmp_path)
    assert "only an admin" in clash.stdout + clash.stderr


def test_index_commands_check_names_bases_and_cycles(site):
    index, _db = site
    cli(index, "create", "team", "--bases", "main", "--description", "the team's")
    cli(index, "create", "stage", "--bases", "team")
    assert "bases team, main" not in cli(index, "show", "stage")
    assert "neither an upstream nor an index" in refused(index, "create", "x", "--bases", "nope")
    assert "is the name of an upstream" in refused(index, "create", "pypi")
    assert "already" in refused(index, "create", "team")
    assert "no index name" in refused(index, "create", "Bad_Name")
    assert "lead back to it" in refused(index, "update", "team", "--bases", "stage")
    assert "bases of main" in refused(index, "update", "main", "--bases", "pypi")

    listed = cli(index, "list")
    assert listed.splitlines()[0].startswith("main ")
    assert "every upstream, in priority order" in listed
    shown = cli(index, "show", "team")
    assert "description  the team's" in shown
    assert "uploaders    admins only" in shown
    cli(index, "update", "stage", "--bases", "pypi,team")
    assert "bases        pypi, team" in cli(index, "show", "stage")


def test_an_index_with_projects_or_dependents_is_deleted_only_with_force(site, upstream, tmp_path):
    index, _db = site
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    cli(index, "create", "stage", "--bases", "team")
    assert (
        upload(
            index, index_url(index, "team") + "legacy/", "alice", make_wheel("t", "1.0"), tmp_path
        ).returncode
        == 0
    )

    reason = refused(index, "delete", "team")
    assert "it has 1 private projects" in reason
    assert "it is a base of stage" in reason
    assert "cannot be deleted" in refused(index, "delete", "main")
    assert "and 1 private projects" in cli(index, "delete", "team", "--force")
    assert "bases        none" in cli(index, "show", "stage")
    assert wait_until(lambda: filenames(index_url(index, "team") + "simple/t/") == 404)


def test_another_process_serves_an_index_created_after_it_started(
    make_index: IndexFactory, upstream: FakeUpstream, site, tmp_path
):
    index, _db = site
    other = make_index(
        upstream.simple_url, name="other", **{"sqlalchemy.url": index.settings.database_url}
    )
    assert filenames(index_url(other, "late") + "simple/x/") == 404
    cli(index, "create", "late", "--bases", "main", "--uploaders", "alice")
    wheel = make_wheel("latelib", "1.0")
    assert (
        upload(index, index_url(index, "late") + "legacy/", "alice", wheel, tmp_path).returncode
        == 0
    )
    assert wait_until(
        lambda: filenames(index_url(other, "late") + "simple/latelib/") == [wheel.filename]
    )


@pytest.mark.parametrize("installer", [pip_install, uv_pip_install], ids=["pip", "uv"])
def test_pip_and_uv_install_a_teams_package_and_its_upstream_dependencies(
    site, upstream, tmp_path, installer
):
    index, _db = site
    upstream.publish(make_wheel("requests-ish", "2.0"))
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    team = index_url(index, "team")
    app = make_wheel("team-app", "1.0", requires_dist=["requests-ish>=2"])
    assert upload(index, team + "legacy/", "alice", app, tmp_path).returncode == 0
    python = make_venv(tmp_path / "venv")
    result = installer(python, team + "simple/", "team-app")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"team_app": "1.0", "requests_ish": "2.0"}


def test_a_release_is_pushed_to_another_index_without_a_refetch(site, upstream, tmp_path):
    index, _db = site
    wheel, sdist = make_wheel("promoted", "1.0"), make_sdist("promoted", "1.0")
    upstream.publish(wheel)
    upstream.publish(sdist)
    cli(index, "create", "release", "--uploaders", "alice")
    main_page = index.simple_url + "promoted/"
    entries = requests.get(main_page, headers={"Accept": JSON}, timeout=30).json()["files"]
    by_name = {e["filename"]: requests.compat.urljoin(main_page, e["url"]) for e in entries}
    assert requests.get(by_name[wheel.filename], timeout=30).content == wheel.content

    # Only stored bytes are pushed: the sdist was never downloaded.
    result = pypicache_cli(index, "index", "push", "main", "release", "promoted==1.0")
    assert result.returncode == 1
    assert f"{sdist.filename} is not stored here yet" in result.stderr
    assert requests.get(by_name[sdist.filename], timeout=30).content == sdist.content
    assert sorted(cli(index, "push", "main", "release", "promoted==1.0").splitlines()) == [
        f"pushed {wheel.filename}",
        f"pushed {sdist.filename}",
    ]
    assert "already there" in cli(index, "push", "main", "release", "Promoted==1.0.0")

    upstream.stop()
    release = index_url(index, "release") + "simple/promoted/"
    assert filenames(release) == sorted([wheel.filename, sdist.filename])
    page = requests.get(release, headers={"Accept": JSON}, timeout=30).json()
    for entry in page["files"]:
        content = requests.get(requests.compat.urljoin(release, entry["url"]), timeout=30).content
        assert content in (wheel.content, sdist.content)
    assert filenames(index.simple_url + "promoted/") != 404  # main still has it


def test_a_push_onto_other_bytes_under_the_same_filename_is_refused(site, upstream, tmp_path):
    index, _db = site
    theirs = make_wheel("clash", "1.0")
    upstream.publish(theirs)
    cli(index, "create", "release", "--uploaders", "alice")
    page = index.simple_url + "clash/"
    entry = requests.get(page, headers={"Accept": JSON}, timeout=30).json()["files"][0]
    requests.get(requests.compat.urljoin(page, entry["url"]), timeout=30).raise_for_status()
    ours = make_wheel("clash", "1.0", extra_files={"clash/ours.py": b"X = 1\n"})
    legacy = index_url(index, "release") + "legacy/"
    assert upload(index, legacy, "root", ours, tmp_path).returncode == 0

    result = pypicache_cli(index, "index", "push", "main", "release", "clash==1.0")
    assert result.returncode == 1
    assert f"release has other bytes under {theirs.filename}" in result.stderr
    assert filenames(index_url(index, "release") + "simple/clash/") == [ours.filename]
    response = requests.get(
        index_url(index, "release") + "simple/clash/", headers={"Accept": JSON}, timeout=30
    )
    assert response.json()["files"][0]["hashes"]["sha256"] == ours.sha256


def test_hot_index_and_upstream_pages_are_pyramids_pages_behind_the_same_login(
    make_index: IndexFactory, upstream: FakeUpstream
):
    upstream.publish(make_wheel("hotlib", "1.0"))
    index = make_index(upstream.simple_url, **{"pypicache.read_auth": "true"})
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    cli(index, "create", "team", "--bases", "main")
    auth = ("alice", PASSWORD)
    for path in ("/i/team/simple/hotlib/", "/u/pypi/simple/hotlib/"):
        url = index.url + path
        first = requests.get(url, headers={"Accept": JSON}, auth=auth, timeout=30)
        again = requests.get(url, headers={"Accept": JSON}, auth=auth, timeout=30)  # from memory
        assert first.status_code == again.status_code == 200
        assert again.content == first.content
        assert again.headers["ETag"] == first.headers["ETag"]
        assert requests.get(url, headers={"Accept": JSON}, timeout=30).status_code == 401


def test_an_index_can_need_a_login_while_main_stays_open(site, upstream):
    index, _db = site
    upstream.publish(make_wheel("open", "1.0"))
    cli(index, "create", "secret", "--bases", "main", "--read-auth")
    assert "reads        need a login" in cli(index, "show", "secret")
    url = index_url(index, "secret") + "simple/open/"
    for _ in range(2):  # Pyramid first, then the hot path: the same answer
        assert requests.get(url, headers={"Accept": JSON}, timeout=30).status_code == 401
        authed = requests.get(url, headers={"Accept": JSON}, auth=("bob", PASSWORD), timeout=30)
        assert authed.status_code == 200
    assert filenames(index.simple_url + "open/") == ["open-1.0-py3-none-any.whl"]
    cli(index, "update", "secret", "--no-read-auth")
    assert wait_until(
        lambda: requests.get(url, headers={"Accept": JSON}, timeout=30).status_code == 200
    )


def test_a_token_for_one_index_reads_and_uploads_there_only(
    make_index: IndexFactory, upstream: FakeUpstream, tmp_path: Path
):
    upstream.publish(make_wheel("shared-dep", "1.0"))
    index = make_index(upstream.simple_url, **{"pypicache.read_auth": "true"})
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    cli(index, "create", "team", "--bases", "main", "--uploaders", "alice")
    created = pypicache_cli(index, "token", "create", "alice", "--index", "team")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert "index team" in pypicache_cli(index, "token", "list").stdout
    no_such = pypicache_cli(index, "token", "create", "alice", "--index", "nosuch")
    assert no_such.returncode == 1
    assert "no index named 'nosuch'" in no_such.stderr

    auth = ("__token__", token)
    team = index_url(index, "team")
    wheel = make_wheel("teamonly", "1.0")
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.content)
    assert twine_upload(team + "legacy/", "__token__", token, path).returncode == 0
    for _ in range(2):  # Pyramid, then the hot path
        page = requests.get(
            team + "simple/teamonly/", headers={"Accept": JSON}, auth=auth, timeout=30
        )
        assert page.status_code == 200

    elsewhere = requests.get(
        index.simple_url + "shared-dep/", headers={"Accept": JSON}, auth=auth, timeout=30
    )
    assert elsewhere.status_code == 403
    assert "is for the index 'team' only" in elsewhere.text
    by_password = requests.get(
        index.simple_url + "shared-dep/",
        headers={"Accept": JSON},
        auth=("alice", PASSWORD),
        timeout=30,
    )
    assert by_password.status_code == 200
    again = requests.get(
        index.simple_url + "shared-dep/", headers={"Accept": JSON}, auth=auth, timeout=30
    )
    assert again.status_code == 403, "the hot path refuses it too"
    upload_main = twine_upload(upload_url(index), "__token__", token, path)
    assert upload_main.returncode != 0
    assert "is for the index 'team' only" in upload_main.stdout + upload_main.stderr


def test_the_admin_page_creates_changes_pushes_to_and_deletes_an_index(site, upstream, page: Page):
    index, db = site
    wheel = make_wheel("fromupstream", "1.0")
    upstream.publish(wheel)
    main_page = index.simple_url + "fromupstream/"
    entry = requests.get(main_page, headers={"Accept": JSON}, timeout=30).json()["files"][0]
    requests.get(requests.compat.urljoin(main_page, entry["url"]), timeout=30).raise_for_status()

    log_in(page, index)
    page.locator(".nav").get_by_role("link", name="Indexes").click()
    page.fill("#index-name", "team")
    page.fill("#index-bases", "main")
    page.fill("#index-uploaders", "alice")
    page.get_by_role("button", name="Create index").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("Index team created")
    row = page.locator("tr[data-index=team]")
    expect(row).to_contain_text("/i/team/simple/")
    expect(row).to_contain_text("admins, alice")

    page.fill("#index-name", "bad")
    page.fill("#index-bases", "nosuch")
    page.get_by_role("button", name="Create index").click()
    expect(page.get_by_text("neither an upstream nor an index")).to_be_visible()

    row.get_by_text("Change…").click()
    row.get_by_label("Uploaders of team").fill("alice, bob")
    row.get_by_role("button", name="Save team").click()
    expect(page.locator("tr[data-index=team]")).to_contain_text("admins, alice, bob")

    page.select_option("#push-source", "main")
    page.select_option("#push-dest", "team")
    page.fill("#push-release", "fromupstream==1.0")
    page.get_by_role("button", name="Push").click()
    expect(
        page.get_by_text(f"Pushed fromupstream 1.0 from main to team: {wheel.filename}")
    ).to_be_visible()
    team_page = index_url(index, "team") + "simple/fromupstream/"
    assert filenames(team_page) == [wheel.filename]

    row = page.locator("tr[data-index=team]")
    row.get_by_text("Delete…").click()
    row.get_by_role("button", name="Delete team").click()
    expect(page.get_by_text("it has 1 private projects")).to_be_visible()
    row = page.locator("tr[data-index=team]")
    row.get_by_text("Delete…").click()
    row.locator("input[name=force]").check()
    row.get_by_role("button", name="Delete team").click()
    expect(page.get_by_text("Index team deleted with its 1 private projects")).to_be_visible()
    expect(page.locator("tr[data-index=team]")).to_have_count(0)
    with db.database.unit_of_work() as session:
        actions = set(session.scalars(select(AuditEntry.action)))
    assert {"index-create", "index-update", "push", "index-delete"} <= actions
