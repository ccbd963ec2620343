"""Project status (PEP 792): passed through from the upstream, set by admins, obeyed."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.clients import installed, make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.hostile import HostileUpstream
from tests.support.privatedb import JSON, PASSWORD, Db, pypicache_cli, upload_url
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        yield upstream


class Metas(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("name"):
            self.found[values["name"] or ""] = values.get("content") or ""


def status(index: RunningIndex, *args: str) -> str:
    result = pypicache_cli(index, "project", "status", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def page(index: RunningIndex, project: str) -> dict[str, Any]:
    response = requests.get(f"{index.simple_url}{project}/", headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def html_metas(index: RunningIndex, project: str) -> dict[str, str]:
    response = requests.get(f"{index.simple_url}{project}/", timeout=30)
    assert response.status_code == 200, response.text
    return Metas(response.text).found


def download(index: RunningIndex, dist: Dist) -> requests.Response:
    root = index.simple_url.removesuffix("simple/")
    return requests.get(f"{root}packages/{dist.name}/{dist.filename}", timeout=30)


def served_status(index: RunningIndex, project: str) -> dict[str, str] | None:
    return page(index, project).get("project-status")


def test_the_upstream_status_passes_through_in_json_and_html(
    make_index: IndexFactory, hostile: HostileUpstream
):
    index = make_index(hostile.simple_url)
    dist = make_wheel("oldlib", "1.0")
    hostile.json_page(
        "oldlib",
        [hostile.serve_dist(dist)],
        meta={"api-version": "1.4"},
        **{"project-status": {"status": "deprecated", "reason": "use newlib <instead>"}},
    )
    data = page(index, "oldlib")
    assert data["meta"]["api-version"] == "1.4"
    assert data["project-status"] == {"status": "deprecated", "reason": "use newlib <instead>"}
    assert [f["filename"] for f in data["files"]] == [dist.filename], "deprecated serves on"
    metas = html_metas(index, "oldlib")
    assert metas["pypi:project-status"] == "deprecated"
    assert metas["pypi:project-status-reason"] == "use newlib <instead>"
    assert "<instead>" not in requests.get(f"{index.simple_url}oldlib/", timeout=30).text


def test_an_admin_quarantines_an_upstream_project_and_nothing_of_it_is_served(
    index: RunningIndex, upstream: FakeUpstream, tmp_path: Path
):
    dist = make_wheel("trojan", "1.0")
    upstream.publish(dist)
    assert download(index, dist).status_code == 200  # cached before the news broke

    out = status(index, "Trojan", "quarantined", "--reason", "malware, see advisory 42")
    assert "quarantined trojan on every index" in out
    assert wait_until(lambda: served_status(index, "trojan") is not None, timeout=15)
    data = page(index, "trojan")
    assert data["project-status"] == {
        "status": "quarantined",
        "reason": "malware, see advisory 42",
    }
    assert data["files"] == []
    assert data["versions"] == []
    assert html_metas(index, "trojan")["pypi:project-status"] == "quarantined"
    response = download(index, dist)
    assert response.status_code == 404
    assert "trojan is quarantined" in response.text
    assert "malware, see advisory 42" in response.text
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, index.simple_url, "trojan")
    assert result.returncode != 0
    assert installed(python) == {}

    listing = pypicache_cli(index, "policy", "list").stdout
    assert "quarantined trojan on every index" in listing
    status(index, "trojan", "active")
    assert wait_until(lambda: served_status(index, "trojan") is None, timeout=15)
    assert [f["filename"] for f in page(index, "trojan")["files"]] == [dist.filename]
    assert download(index, dist).status_code == 200
    result = uv_pip_install(make_venv(tmp_path / "uv"), index.simple_url, "trojan")
    assert result.returncode == 0, result.stderr


def test_an_archived_private_project_refuses_uploads_with_409_and_still_installs(
    index: RunningIndex, tmp_path: Path
):
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    first, second = make_wheel("inhouse", "1.0"), make_wheel("inhouse", "2.0")
    result = twine_upload(upload_url(index), "alice", PASSWORD, first.write(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr

    status(index, "inhouse", "archived", "--reason", "replaced by inhouse2", "--index", "main")
    assert wait_until(lambda: served_status(index, "inhouse") is not None, timeout=15)
    assert served_status(index, "inhouse") == {
        "status": "archived",
        "reason": "replaced by inhouse2",
    }
    result = twine_upload(upload_url(index), "alice", PASSWORD, second.write(tmp_path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "409" in output
    assert "inhouse is archived" in output
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, index.simple_url, "inhouse")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"inhouse": "1.0"}

    status(index, "inhouse", "deprecated", "--index", "main")
    assert wait_until(
        lambda: served_status(index, "inhouse") == {"status": "deprecated"}, timeout=15
    )
    result = twine_upload(upload_url(index), "alice", PASSWORD, second.write(tmp_path))
    assert result.returncode == 0, "a deprecated project still takes uploads"


def test_a_bad_status_command_changes_nothing_and_says_why(index: RunningIndex):
    result = pypicache_cli(index, "project", "status", "not a name!", "archived")
    assert result.returncode != 0
    assert "is no project name" in result.stderr
    result = pypicache_cli(index, "project", "status", "lib", "archived", "--reason", "bad\x1b[2J")
    assert result.returncode != 0
    assert "control character" in result.stderr
    assert "no rules" in pypicache_cli(index, "policy", "list").stdout


def test_an_admin_quarantines_and_restores_a_project_on_its_admin_page(
    index: RunningIndex, upstream: FakeUpstream, page: Page
):
    dist = make_wheel("shady", "1.0")
    upstream.publish(dist)
    assert download(index, dist).status_code == 200
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.engine.dispose()

    log_in(page, index)
    page.goto(f"{index.url}/admin/projects/shady/")
    card = page.locator("#status")
    card.get_by_label("Status of shady").select_option("quarantined")
    card.get_by_label("Reason").fill("<script>alert(1)</script> INC-7")
    card.get_by_role("button", name="Set status").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text(
        "shady is quarantined on every index"
    )
    expect(page.locator("#status")).to_contain_text("<script>alert(1)</script> INC-7")
    assert wait_until(lambda: download(index, dist).status_code == 404, timeout=15)
    assert page_status(index, "shady")["status"] == "quarantined"

    card = page.locator("#status")
    card.get_by_label("Status of shady").select_option("active")
    card.get_by_role("button", name="Set status").click()
    expect(page.locator(".flash, [role=status]").first).to_contain_text("shady is active")
    assert wait_until(lambda: download(index, dist).status_code == 200, timeout=15)


def page_status(index: RunningIndex, project: str) -> dict[str, str]:
    found = served_status(index, project)
    assert found is not None
    return found
