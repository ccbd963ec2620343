"""The admin Policy page and the held-files metric: what the rules hold back, made and ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

from pypicache.times import format_moment
from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import PASSWORD, Db
from tests.support.waiting import wait_until


@pytest.fixture
def cooling(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    index = make_index(upstream.simple_url, **{"pypicache.cooldown": "7d"})
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.engine.dispose()
    return index


def download(index: RunningIndex, dist: Dist) -> requests.Response:
    root = index.simple_url.removesuffix("simple/")
    return requests.get(f"{root}packages/{dist.name}/{dist.filename}", timeout=30)


def held_files(index: RunningIndex) -> dict[str, float]:
    response = requests.get(index.url + "/metrics", timeout=10)
    assert response.status_code == 200
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "pypicache_policy_held_files"
    }


def flash(page: Page):  # type: ignore[no-untyped-def]
    return page.locator(".flash, [role=status]").first


def test_an_admin_sees_what_is_held_blocks_a_release_and_revokes_the_block(
    cooling: RunningIndex, upstream: FakeUpstream, page: Page
):
    now = datetime.now(UTC)
    young = make_wheel("lib", "2.0")
    upstream.publish(make_wheel("lib", "1.0"), upload_time=now - timedelta(days=30))
    upstream.publish(young, upload_time=now - timedelta(hours=1))
    evil = make_wheel("evil", "1.0")
    upstream.publish(evil, upload_time=now - timedelta(days=30))
    assert download(cooling, evil).status_code == 200
    assert download(cooling, young).status_code == 403  # its page is cached now

    log_in(page, cooling)
    page.locator(".nav").get_by_role("link", name="Policy").click()
    expect(page.locator("#settings")).to_contain_text("7d")
    held = page.locator("#held")
    expect(held).to_contain_text(young.filename)
    matures = format_moment((now - timedelta(hours=1) + timedelta(days=7)).replace(tzinfo=None))
    expect(held).to_contain_text(matures[:16])

    page.fill("#block-subject", "not a requirement!")
    page.fill("#block-reason", "oops")
    page.get_by_role("button", name="Block").click()
    expect(flash(page)).to_contain_text("Not made")
    expect(page.locator("#rules")).to_contain_text("No rules")

    page.fill("#block-subject", "evil==1.0")
    page.fill("#block-reason", "typosquat <b>INC-9</b>")
    page.get_by_role("button", name="Block").click()
    expect(flash(page)).to_contain_text("Made rule")
    rules = page.locator("#rules")
    expect(rules).to_contain_text("evil==1.0")
    expect(rules).to_contain_text("typosquat <b>INC-9</b>")  # shown as text, not markup
    expect(page.locator("#held")).to_contain_text(evil.filename)
    response = download(cooling, evil)
    assert response.status_code == 403
    assert "typosquat <b>INC-9</b>" in response.text
    assert held_files(cooling) == {"block": 1.0, "cooldown": 1.0, "cutoff": 0.0}

    page.locator("#rules").get_by_role("button", name="Revoke").click()
    expect(flash(page)).to_contain_text("Ended rule")
    expect(page.locator("#rules")).to_contain_text("No rules")
    assert wait_until(lambda: download(cooling, evil).status_code == 200, timeout=15)


def test_release_grants_and_allowlists_are_made_on_the_page(
    cooling: RunningIndex, upstream: FakeUpstream, page: Page
):
    now = datetime.now(UTC)
    young = make_wheel("urgent", "1.1")
    upstream.publish(young, upload_time=now - timedelta(hours=2))
    other = make_wheel("leftpad", "1.0")
    upstream.publish(other, upload_time=now - timedelta(days=30))
    assert download(cooling, young).status_code == 403

    log_in(page, cooling)
    page.goto(f"{cooling.url}/admin/policy/")
    page.fill("#release-subject", "urgent==1.1")
    page.fill("#release-reason", "fixes CVE-2026-1")
    page.fill("#release-until", "yesterday")
    page.get_by_role("button", name="Let through").click()
    expect(flash(page)).to_contain_text("is not an RFC 3339 time")
    page.fill("#release-subject", "urgent==1.1")
    page.fill("#release-reason", "fixes CVE-2026-1")
    page.get_by_role("button", name="Let through").click()
    expect(flash(page)).to_contain_text("allow-release urgent==1.1")
    assert wait_until(lambda: download(cooling, young).status_code == 200, timeout=15)

    page.fill("#allow-subject", "urgent acme-*")
    page.get_by_role("button", name="Allow only these").click()
    expect(flash(page)).to_contain_text("allow-only acme-*")
    assert wait_until(lambda: download(cooling, other).status_code == 404, timeout=15)
    assert download(cooling, young).status_code == 200
