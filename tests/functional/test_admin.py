"""The admin web page in a real browser: Debian's Chromium, headless, driven by Playwright."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import insert, select

from pypicache.models import Alarm, ApiToken, AuditEntry, Project, utcnow
from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.clients import make_venv, pip_install
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.following import caught_up, follow_settings
from tests.support.privatedb import PASSWORD, Db
from tests.support.uploads import form_fields, post_upload
from tests.support.waiting import wait_until

JSON = "application/vnd.pypi.simple.v1+json"
# Screenshots go here, for a person to look at after the run.
OUTPUT = Path(
    os.environ.get("PYPICACHE_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")
)


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream) -> Iterator[tuple[RunningIndex, Db]]:
    index = make_index(upstream.simple_url)
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.accounts.add_user("alice", PASSWORD)
    yield index, db
    db.engine.dispose()


def nav(page: Page, section: str) -> None:
    page.locator(".nav").get_by_role("link", name=section).click()


def write(db: Db, statement, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with db.database.unit_of_work() as db:
        db.execute(statement, rows)


# -- logging in --------------------------------------------------------------------------------


def test_anonymous_visitors_get_the_login_page_and_no_data(site, page):
    index, _db = site
    for path in ("/admin/", "/admin/users/", "/admin/audit/", "/admin/projects/demo/"):
        page.goto(index.url + path)
        expect(page).to_have_url(re.compile(r"/admin/login\?next="))
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert "root" not in page.content()
    # Without a browser too: a redirect, never the page.
    response = requests.get(index.url + "/admin/users/", allow_redirects=False, timeout=10)
    assert response.status_code == 303
    assert response.headers["Location"].startswith(index.url + "/admin/login?next=")


def test_login_sets_an_httponly_samesite_cookie_is_audited_and_logout_ends_it(site, page):
    index, db = site
    log_in(page, index, password="wrong password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")

    log_in(page, index)
    expect(page).to_have_url(index.url + "/admin/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "pypicache_admin"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/admin", "never sent to the API"
    logins = db.query(select(AuditEntry.action, AuditEntry.actor).order_by(AuditEntry.id))
    assert logins == [("login-failed", "root"), ("login", "root")]

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    expect(page.get_by_role("status")).to_contain_text("logged out")
    page.goto(index.url + "/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))


def test_a_non_admin_gets_403_and_no_data(site, page):
    index, _db = site
    log_in(page, index, "alice")
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    response = page.goto(index.url + "/admin/users/")
    assert response is not None
    assert response.status == 403
    assert "root" not in page.content()
    # Basic auth is no way around it.
    response = requests.get(index.url + "/admin/users/", auth=("alice", PASSWORD), timeout=10)
    assert response.status_code == 403
    assert "root" not in response.text
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))


def test_a_form_posted_without_the_csrf_token_is_refused(site, page):
    index, db = site
    db.accounts.create_token("alice", "ci")
    log_in(page, index)
    page.goto(index.url + "/admin/users/")
    page.eval_on_selector("form.revoke input[name=csrf_token]", "input => input.remove()")
    page.locator("form.revoke").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    assert db.query(select(ApiToken.revoked_at)) == [(None,)], "nothing was changed"
    # The same without the browser's help: the session cookie alone is not enough.
    response = page.request.post(
        index.url + "/admin/users/", form={"name": "mallory", "password": PASSWORD}
    )
    assert response.status == 400
    assert "mallory" not in [name for name, _admin, _at in db.accounts.users()]


# -- the dashboard -----------------------------------------------------------------------------


def test_the_dashboard_after_a_cached_install_and_a_follower_invalidation(
    make_index, upstream, page, tmp_path
):
    settings = follow_settings(upstream, **{"pypicache.chart_interval": "0.25"})
    index = make_index(upstream.simple_url, **settings)
    db = Db(index)
    try:
        db.accounts.add_user("root", PASSWORD, admin=True)
        wheel = make_wheel("swapped", "1.0")
        upstream.publish(wheel)
        upstream.publish(make_wheel("steady", "2.0"))
        result = pip_install(make_venv(tmp_path / "venv"), index.simple_url, "swapped", "steady")
        assert result.returncode == 0, result.stderr
        for _ in range(3):  # pages served from the cache count as hits
            requests.get(index.simple_url + "steady/", headers={"Accept": JSON}, timeout=10)
        assert caught_up(index, upstream)

        new_bytes = make_wheel("swapped", "1.0", extra_files={"new.txt": b"new"}).content
        upstream.replace_bytes(wheel.filename, new_bytes)
        new_sha256 = hashlib.sha256(new_bytes).hexdigest()
        swapped = index.simple_url + "swapped/"
        assert wait_until(
            lambda: (
                requests.get(swapped, headers={"Accept": JSON}, timeout=10).json()["files"][0][
                    "hashes"
                ]["sha256"]
                == new_sha256
            )
        )
        assert caught_up(index, upstream)

        log_in(page, index)
        banner = page.locator(".banner")
        expect(banner).to_contain_text("1 unacknowledged alarm")
        alarms = page.locator("section.danger")
        expect(alarms).to_contain_text("upstream-mutation")
        expect(alarms).to_contain_text(wheel.filename)
        stats = page.locator(".stats")
        expect(stats).to_contain_text("Caught up")
        expect(stats).to_contain_text(f"watermark {upstream.serial:,} of {upstream.serial:,}")
        expect(stats).to_contain_text("2 cached · 0 private")
        assert re.search(r"[1-9]\d* hits · [1-9]\d* misses", stats.inner_text())
        expect(page.locator("dl.facts")).to_contain_text("this process")
        invalidations = page.locator("section", has_text="Recent invalidations")
        row = invalidations.locator("tbody tr").first
        expect(row).to_contain_text("invalidate")
        expect(row).to_contain_text(wheel.filename)
        expect(row).to_contain_text(f"{wheel.sha256[:10]} → {new_sha256[:10]}")
        expect(page.locator("svg.chart")).to_have_count(3)
        expect(page.locator("svg.chart polyline").first).to_be_attached()
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=OUTPUT / "admin-dashboard.png", full_page=True)
    finally:
        db.engine.dispose()


def test_an_alarm_stays_on_the_dashboard_until_acknowledged(site, page):
    index, db = site
    wheel = make_wheel("acme-utils", "1.0")
    other = make_wheel("acme-utils", "1.0", extra_files={"x.txt": b"x"})
    for dist in (wheel, other):  # other bytes under the same filename: a conflict
        post_upload(index.url + "/legacy/", ("alice", PASSWORD), form_fields(dist), dist.filename,
                    dist.content)  # fmt: skip
    log_in(page, index)
    expect(page.locator(".banner")).to_contain_text("1 unacknowledged alarm")
    expect(page.locator("section.danger")).to_contain_text("upload-conflict")
    page.reload()  # still there on the next visit
    expect(page.locator(".banner")).to_be_visible()

    page.locator("section.danger li").get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_contain_text("1 alarm acknowledged")
    expect(page.locator(".banner")).to_have_count(0)
    page.goto(index.url + "/admin/alarms/")
    expect(page.get_by_role("heading", name="0 unacknowledged")).to_be_visible()
    expect(page.locator("table")).to_contain_text("upload-conflict")
    assert db.query(select(Alarm.acknowledged_at.is_not(None))) == [(True,)]
    assert db.query(select(AuditEntry.actor).where(AuditEntry.action == "acknowledge")) == [
        ("root",)
    ]


# -- projects ----------------------------------------------------------------------------------


def test_project_search_pages_through_the_database(site, page):
    index, db = site
    now = utcnow()
    write(db, insert(Project), [
        {"name": f"bulk-{i:03d}", "display_name": f"Bulk_{i:03d}", "versions": [],
         "checked_at": now, "private": i % 100 == 7,
         "source": "@main" if i % 100 == 7 else "pypi"}
        for i in range(300)
    ])  # fmt: skip
    log_in(page, index)
    nav(page, "Projects")
    page.fill("#q", "bulk")
    page.get_by_role("button", name="Search").click()
    pager = page.locator(".pager")
    expect(pager).to_contain_text("1 to 50 of 300 projects")
    expect(pager).to_contain_text("Page 1 of 6")
    expect(page.locator("tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Next →").click()
    expect(pager).to_contain_text("51 to 100 of 300 projects")
    expect(page.locator("tbody tr").first).to_contain_text("bulk-050")

    # Spelled any way, normalized: the exact name first, then the names it starts.
    page.goto(index.url + "/admin/projects/?q=BULK_12")
    expect(pager).to_contain_text("1 to 10 of 10 projects")
    page.goto(index.url + "/admin/projects/?q=Bulk.120")
    expect(page.locator("tbody tr").first).to_contain_text("bulk-120")
    page.goto(index.url + "/admin/projects/?q=bulk&kind=private")
    expect(pager).to_contain_text("1 to 3 of 3 projects")
    expect(page.locator("tbody")).to_contain_text("bulk-207")
    page.goto(index.url + "/admin/projects/?q=nothing-like-it")
    expect(page.locator("tbody")).to_contain_text("No project name contains")


def test_upload_yank_unyank_delete_and_merge_in_the_browser(site, page, tmp_path):
    index, db = site
    wheel = make_wheel("acme-utils", "1.0")
    log_in(page, index)
    nav(page, "Upload")
    page.set_input_files("#content", wheel.write(tmp_path))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text(f"Uploaded {wheel.filename}")
    expect(page).to_have_url(index.url + "/admin/projects/acme-utils/")
    row = page.locator("tr", has_text=wheel.filename)
    expect(row).to_contain_text("private")
    expect(row).to_contain_text(wheel.sha256[:12])
    simple = requests.get(index.simple_url + "acme-utils/", headers={"Accept": JSON}, timeout=10)
    assert [f["filename"] for f in simple.json()["files"]] == [wheel.filename]

    row.get_by_text("Yank…").click()
    row.get_by_placeholder("Reason (optional)").fill("broken build")
    row.get_by_role("button", name=f"Yank {wheel.filename}").click()
    expect(row).to_contain_text("yanked")
    expect(row).to_contain_text("broken build")
    simple = requests.get(index.simple_url + "acme-utils/", headers={"Accept": JSON}, timeout=10)
    assert simple.json()["files"][0]["yanked"] == "broken build"
    row.get_by_role("button", name="Unyank").click()
    expect(page.get_by_role("status")).to_contain_text("no longer yanked")

    page.get_by_role("button", name="Merge upstream files").click()
    expect(page.get_by_role("button", name="Stop merging upstream files")).to_be_visible()
    page.get_by_role("button", name="Stop merging upstream files").click()
    expect(page.get_by_role("button", name="Merge upstream files")).to_be_visible()

    row.get_by_text("Delete…").click()
    row.get_by_role("button", name=f"Delete {wheel.filename}").click()
    expect(page.get_by_role("status")).to_contain_text("is deleted")
    expect(page.locator("tbody")).to_contain_text("No files")

    # Refused like a twine upload would be, with the same reason.
    bad = make_wheel("acme-utils", "2.0")
    renamed = tmp_path / "acme_utils-3.0-py3-none-any.whl"
    renamed.write_bytes(bad.content)
    nav(page, "Upload")
    page.set_input_files("#content", renamed)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".flash-error")).to_contain_text("Upload refused")
    actions = db.query(select(AuditEntry.action, AuditEntry.actor).where(AuditEntry.project != ""))
    assert actions == [
        ("claim", "root"), ("upload", "root"), ("yank", "root"), ("unyank", "root"),
        ("merge-upstream", "root"), ("no-merge-upstream", "root"), ("delete", "root"),
    ]  # fmt: skip


def test_refresh_from_upstream_and_purge_the_cached_files(make_index, upstream, page):
    index = make_index(upstream.simple_url, **{"pypicache.page_ttl": "3600"})
    db = Db(index)
    try:
        db.accounts.add_user("root", PASSWORD, admin=True)
        wheel = make_wheel("steady", "1.0")
        upstream.publish(wheel)
        url = f"{index.url}/packages/steady/{wheel.filename}"
        assert requests.get(url, timeout=10).content == wheel.content
        blob = index.app.services.store.path(wheel.sha256)
        assert wait_until(blob.is_file)
        upstream.publish(make_wheel("steady", "2.0"))  # the cached page does not know yet

        log_in(page, index)
        page.goto(index.url + "/admin/projects/steady/")
        expect(page.locator("tbody tr")).to_have_count(1)
        page.get_by_role("button", name="Refresh from upstream").click()
        expect(page.get_by_role("status")).to_contain_text("fetched from the upstream just now")
        expect(page.locator("tbody tr")).to_have_count(2)
        expect(page.locator("tbody tr").first).to_contain_text("2.0")

        row = page.locator("tr", has_text=wheel.filename)
        expect(row).to_contain_text("stored")
        page.get_by_role("button", name="Purge 1 cached file").click()
        expect(page.get_by_role("status")).to_contain_text("Purged 1 cached file of steady")
        expect(row).to_contain_text("not yet")
        assert not blob.exists()
        assert requests.get(url, timeout=10).content == wheel.content, "fetched again"
    finally:
        db.engine.dispose()


def test_shadowed_names_list_private_projects_the_upstream_has_too(site, upstream, page):
    index, _db = site
    upstream.publish(make_wheel("acme-utils", "0.1"))
    for dist in (make_wheel("acme-utils", "1.0"), make_wheel("acme-internal", "1.0")):
        # An upstream name: only an admin may claim it.
        response = post_upload(index.url + "/legacy/", ("root", PASSWORD), form_fields(dist),
                               dist.filename, dist.content)  # fmt: skip
        assert response.status_code == 200, response.text
    log_in(page, index)
    nav(page, "Shadowed names")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("acme-utils")
    expect(rows.first).to_contain_text("shadowed")
    rows.first.get_by_role("button", name="Merge upstream files").click()
    expect(page).to_have_url(index.url + "/admin/shadowed/")
    expect(rows.first).to_contain_text("merged in")


# -- users and tokens --------------------------------------------------------------------------


def test_users_roles_passwords_and_tokens(make_index, upstream, page):
    index = make_index(upstream.simple_url, **{"pypicache.read_auth": "true"})
    db = Db(index)
    try:
        db.accounts.add_user("root", PASSWORD, admin=True)
        log_in(page, index)
        nav(page, "Users & tokens")
        page.fill("#new-name", "carol")
        page.fill("#new-password", "carol's first password")
        page.get_by_role("button", name="Add user").click()
        expect(page.get_by_role("status")).to_contain_text("User carol created (uploader)")

        carol = page.locator("tr", has_text="carol")
        carol.get_by_label("Role of carol").select_option("admin")
        carol.get_by_role("button", name="Set", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("carol is now an admin")
        assert ("carol", True) in [(n, admin) for n, admin, _at in db.accounts.users()]

        carol.get_by_text("Reset password…").click()
        carol.get_by_label("New password for carol").fill("carol's second password")
        carol.get_by_role("button", name="Set password of carol").click()
        expect(page.get_by_role("status")).to_contain_text("carol has a new password")
        status = index.url + "/api/status"
        assert requests.get(status, auth=("carol", "carol's second password"), timeout=10).ok

        page.select_option("#token-user", "carol")
        page.fill("#token-description", "ci")
        page.get_by_role("button", name="Create token").click()
        token = page.locator("#new-token").inner_text()
        assert token.startswith("pypicache-")
        assert requests.get(status, auth=("__token__", token), timeout=10).status_code == 200
        page.goto(index.url + "/admin/users/")
        assert token not in page.content(), "shown once"

        tokens = page.locator("tr", has_text="ci")
        tokens.get_by_role("button", name="Revoke").click()
        expect(page.get_by_role("status")).to_contain_text("is revoked")
        expect(tokens).to_contain_text("revoked")
        assert requests.get(status, auth=("__token__", token), timeout=10).status_code == 401
        actions = db.query(select(AuditEntry.action).where(AuditEntry.actor == "root"))
        assert [a for (a,) in actions if a not in ("login",)] == [
            "add-user", "set-role", "set-password", "create-token", "revoke-token",
        ]  # fmt: skip
    finally:
        db.engine.dispose()


# -- the audit log -----------------------------------------------------------------------------


def test_the_audit_log_pages_and_filters(site, page):
    index, db = site
    start = utcnow() - timedelta(hours=1)
    write(db, insert(AuditEntry), [
        {"at": start + timedelta(seconds=i), "action": "upload" if i % 2 else "yank",
         "project": f"p{i}", "filename": f"p{i}-1.0.tar.gz", "actor": "alice"}
        for i in range(120)
    ])  # fmt: skip
    log_in(page, index)  # one more entry: the login
    nav(page, "Audit log")
    pager = page.locator(".pager")
    expect(pager).to_contain_text("1 to 50 of 121 entries")
    expect(page.locator("tbody tr").first).to_contain_text("login")
    expect(page.locator("tbody tr").nth(1)).to_contain_text("p119")
    page.get_by_role("link", name="Next →").click()
    expect(pager).to_contain_text("51 to 100 of 121 entries")
    expect(page.locator("tbody tr").first).to_contain_text("p70")

    page.select_option("#action", "yank")
    page.get_by_role("button", name="Filter").click()
    expect(pager).to_contain_text("1 to 50 of 60 entries")
    page.fill("#project", "p4")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("p4-1.0.tar.gz")
