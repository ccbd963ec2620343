"""The admin's Policy page in Chromium: rules made and ended there apply to real clients."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import select

from pypicache.models import AuditEntry, PolicyRule
from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.clients import installed, make_venv, uv_pip_install
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import JSON, PASSWORD, Db
from tests.support.waiting import wait_until

OUTPUT = Path(
    os.environ.get("PYPICACHE_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")
)
MARKUP = '<img src=x onerror="window.pwned=1">'


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream) -> Iterator[tuple[RunningIndex, Db]]:
    index = make_index(upstream.simple_url, **{"pypicache.cooldown": "7d"})
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    yield index, db
    db.engine.dispose()


def file_url(index: RunningIndex, dist: Dist) -> str:
    return f"{index.url}/packages/{dist.name}/{dist.filename}"


def filenames(index: RunningIndex, project: str) -> list[str]:
    response = requests.get(f"{index.simple_url}{project}/", headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 200, response.text
    return sorted(f["filename"] for f in response.json()["files"])


def rules(db: Db) -> list[tuple[str, str, str | None]]:
    return [
        tuple(row)
        for row in db.query(
            select(PolicyRule.kind, PolicyRule.subject, PolicyRule.revoked_by).order_by(
                PolicyRule.id
            )
        )
    ]


def test_an_admin_blocks_a_release_sees_what_is_held_and_revokes_the_block(
    site: tuple[RunningIndex, Db], upstream: FakeUpstream, page: Page, tmp_path: Path
):
    index, db = site
    now = datetime.now(UTC)
    good, bad = make_wheel("lib", "1.0"), make_wheel("lib", "2.0")
    for dist in (good, bad):
        upstream.publish(dist, upload_time=now - timedelta(days=30))
    young = make_wheel("fresh", "1.0")
    uploaded = now - timedelta(hours=1)
    upstream.publish(young, upload_time=uploaded)
    assert filenames(index, "lib") == [good.filename, bad.filename]
    assert filenames(index, "fresh") == [], "held by the cooldown"

    log_in(page, index)
    page.locator(".nav").get_by_role("link", name="Policy").click()
    expect(page.get_by_role("heading", name="Policy", exact=True)).to_be_visible()
    expect(page.locator("#policy-settings")).to_contain_text("7d")
    held = page.locator("#held tr[data-filename='fresh-1.0-py3-none-any.whl']")
    matures = (uploaded + timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S UTC")
    expect(held).to_contain_text("cooldown")
    expect(held).to_contain_text("main")
    expect(held).to_contain_text(matures)

    page.fill("#block-requirement", "Lib==2.0")
    page.fill("#block-reason", f"compromised release {MARKUP}")
    page.get_by_role("button", name="Block", exact=True).click()
    expect(page.locator(".flash-ok")).to_contain_text("Blocked lib==2.0 on every index (rule 1)")
    rule = page.locator("#rules tr[data-rule='1']")
    expect(rule).to_contain_text(f"compromised release {MARKUP}")  # the text, not markup
    expect(rule).to_contain_text("root")
    expect(page.locator("main img")).to_have_count(0)
    assert page.evaluate("typeof window.pwned") == "undefined"

    response = requests.get(file_url(index, bad), timeout=30)
    assert response.status_code == 403
    assert "is blocked by rule 1 (lib==2.0): compromised release" in response.text
    python = make_venv(tmp_path / "uv")
    result = uv_pip_install(python, index.simple_url, "lib")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"lib": "1.0"}, "the blocked release is left out of the page"
    page.reload()
    expect(page.locator(f"#held tr[data-filename='{bad.filename}']")).to_contain_text("block")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=OUTPUT / "admin-policy.png", full_page=True)

    rule.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash-ok")).to_contain_text("Rule 1 (block lib==2.0) ended.")
    expect(page.locator("#rules tr[data-rule='1']")).to_have_count(0)
    assert wait_until(
        lambda: requests.get(file_url(index, bad), timeout=30).status_code == 200, timeout=15
    )
    expect(page.locator(f"#held tr[data-filename='{bad.filename}']")).to_have_count(0)
    assert rules(db) == [("block", "lib==2.0", "root")]
    actions = db.query(
        select(AuditEntry.action, AuditEntry.actor).where(AuditEntry.project == "lib")
    )
    assert actions == [("policy-block", "root"), ("policy-revoke", "root")]


def test_a_grant_and_an_allowlist_made_on_the_page_apply_to_one_index(
    site: tuple[RunningIndex, Db], upstream: FakeUpstream, page: Page
):
    index, db = site
    young = make_wheel("fresh", "1.0")
    upstream.publish(young, upload_time=datetime.now(UTC) - timedelta(hours=1))
    upstream.publish(
        make_wheel("leftpad", "1.0"), upload_time=datetime.now(UTC) - timedelta(days=30)
    )
    assert filenames(index, "fresh") == []

    log_in(page, index)
    page.goto(index.url + "/admin/policy/")
    page.fill("#release-release", "Fresh==1.0")
    page.fill("#release-reason", "fixes CVE-2026-1")
    page.fill("#release-until", "2099-01-01T00:00:00Z")
    page.get_by_role("button", name="Let through").click()
    expect(page.locator(".flash-ok")).to_contain_text("Let through fresh==1.0 on every index")
    expect(page.locator("#rules tr[data-rule='1']")).to_contain_text("2099-01-01 00:00:00 UTC")
    assert wait_until(lambda: filenames(index, "fresh") == [young.filename], timeout=15)
    expect(page.locator("#held")).to_contain_text("Nothing is held back.")

    page.fill("#allow-patterns", "acme-*, fresh")
    page.select_option("#allow-index", "main")
    page.get_by_role("button", name="Allow only these").click()
    expect(page.locator(".flash-ok")).to_contain_text("Allowlisted acme-*, fresh on index main")
    assert wait_until(
        lambda: requests.get(f"{index.simple_url}leftpad/", timeout=30).status_code == 404,
        timeout=15,
    )
    assert filenames(index, "fresh") == [young.filename]
    assert rules(db) == [
        ("allow-release", "fresh==1.0", None),
        ("allow-only", "acme-*", None),
        ("allow-only", "fresh", None),
    ]


@pytest.mark.parametrize(
    ("form", "fields", "refusal"),
    [
        ("Block", {"#block-requirement": "lib; os_name=='nt'", "#block-reason": "x"},
         "a block names a project and versions only"),
        ("Block", {"#block-requirement": "lib", "#block-reason": "x",
                   "#block-until": "2001-01-01T00:00:00Z"}, "is in the past"),
        ("Block", {"#block-requirement": "lib", "#block-reason": "x", "#block-until": "soon"},
         "until: 'soon' is not an RFC 3339 time"),
        ("Let through", {"#release-release": "lib>=1", "#release-reason": "x"},
         "is not PROJECT==VERSION"),
        ("Allow only these", {"#allow-patterns": "acme-* ../etc"},
         "is no pattern of project names"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_the_reason_and_changes_nothing(
    site: tuple[RunningIndex, Db], page: Page, form: str, fields: dict[str, str], refusal: str
):
    index, db = site
    log_in(page, index)
    page.goto(index.url + "/admin/policy/")
    page.fill("#block-requirement", "kept")
    page.fill("#block-reason", "made first")
    page.get_by_role("button", name="Block", exact=True).click()
    expect(page.locator(".flash-ok")).to_contain_text("Blocked kept")

    for selector, value in fields.items():
        page.fill(selector, value)
    page.get_by_role("button", name=form, exact=True).click()
    expect(page.locator(".flash-error")).to_contain_text("Not made: ")
    expect(page.locator(".flash-error")).to_contain_text(refusal)
    assert rules(db) == [("block", "kept", None)], "nothing made, nothing lost"
    expect(page.locator("#rules tbody tr")).to_have_count(1)


def test_an_unknown_index_a_forged_form_and_an_unknown_rule_are_refused(
    site: tuple[RunningIndex, Db], page
):
    index, db = site
    log_in(page, index)
    page.goto(index.url + "/admin/policy/")
    page.eval_on_selector(
        "#block-index", "select => select.add(new Option('nosuch', 'nosuch', true, true))"
    )
    page.fill("#block-requirement", "lib")
    page.fill("#block-reason", "x")
    page.get_by_role("button", name="Block", exact=True).click()
    expect(page.locator(".flash-error")).to_contain_text("there is no index named 'nosuch'")
    assert rules(db) == []

    forged = page.request.post(
        index.url + "/admin/policy/block", form={"requirement": "lib", "reason": "x"}
    )
    assert forged.status == 400, "no CSRF token: refused"
    assert rules(db) == []

    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(
        index.url + "/admin/policy/99/revoke", form={"csrf_token": token or ""}
    )
    assert response.ok  # the page it redirects to
    assert re.search(r"Not ended: there is no rule 99 in force", response.text())
