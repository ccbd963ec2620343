"""An upstream that puts markup in every field it can: none of it runs, anywhere we show it.

The project page, the /simple/ list and the admin pages escape every value, and each
of them sends a Content-Security-Policy that forbids script, so even a missed escape
would not run script on the index's origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.hostile import Answer, HostileUpstream
from tests.support.privatedb import PASSWORD, Db

SCRIPT = '"><script>window.pwned=1</script>'
IMAGE = '\'><img src=x onerror="window.pwned=2;alert(2)">'
HOSTILE = SCRIPT + IMAGE
SIMPLE_POLICY = "default-src 'none'; frame-ancestors 'none'"
ADMIN_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HTML = "text/html"
ADMIN_PAGES = (
    "/admin/projects/?q=evil",
    "/admin/upload",
    "/admin/policy/",
    "/admin/users/",
    "/admin/alarms/",
    "/admin/shadowed/",
    "/admin/audit/",
)
CONTENT = b"not really an sdist"
SHA256 = hashlib.sha256(CONTENT).hexdigest()


class Anchors(HTMLParser):
    """The anchors of a page and every start tag, as a browser's tokenizer would see them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self._in_anchor = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.anchors.append(dict(attrs))
            self.texts.append("")
            self._in_anchor = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor:
            self.texts[-1] += data


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream() as upstream:
        upstream.json_page(
            "evil",
            [
                {
                    "filename": "evil-1.0.tar.gz",
                    "url": "/files/evil-1.0.tar.gz",
                    "hashes": {"sha256": SHA256},
                    "size": len(CONTENT),
                    "requires-python": HOSTILE,
                    "yanked": HOSTILE,
                    "core-metadata": {"sha256": SHA256},
                },
                {
                    "filename": 'evil-2.0"><img src=x onerror=alert(3)>.tar.gz',
                    "url": "/files/evil-2.0.tar.gz",
                    "hashes": {"sha256": SHA256},
                    "yanked": IMAGE,
                },
            ],
        )
        upstream.set("/files/evil-1.0.tar.gz", Answer(body=CONTENT))
        yield upstream


@pytest.fixture
def site(make_index: IndexFactory, hostile: HostileUpstream) -> Iterator[RunningIndex]:
    index = make_index(hostile.simple_url)
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    yield index
    db.engine.dispose()


def assert_simple_headers(response: requests.Response) -> None:
    assert response.headers["Content-Security-Policy"] == SIMPLE_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_markup_from_the_upstream_page_is_attribute_text_on_ours(site):
    url = site.simple_url + "evil/"
    for attempt in ("miss", "hit"):  # the fill through Pyramid, then the fast path
        response = requests.get(url, headers={"Accept": HTML}, timeout=10)
        assert response.status_code == 200, attempt
        assert_simple_headers(response)
        parsed = Anchors(response.text)
        assert "script" not in parsed.tags
        assert "img" not in parsed.tags
        first = next(a for a in parsed.anchors if "evil-1.0" in str(a["href"]))
        assert first["data-requires-python"] == HOSTILE
        assert first["data-yanked"] == HOSTILE
        assert first["data-core-metadata"] == f"sha256={SHA256}"
        assert str(first["href"]).endswith(f"/evil-1.0.tar.gz#sha256={SHA256}")
    # The JSON page carries the same text, as JSON strings: nothing there to escape.
    data = requests.get(
        url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10
    ).json()
    assert data["files"][0]["yanked"] == HOSTILE


def test_a_304_and_the_json_page_carry_the_policy_too(site):
    url = site.simple_url + "evil/"
    first = requests.get(url, headers={"Accept": HTML}, timeout=10)
    again = requests.get(
        url, headers={"Accept": HTML, "If-None-Match": first.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304
    assert_simple_headers(again)
    assert_simple_headers(
        requests.get(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10)
    )


def test_the_project_list_links_only_valid_names_by_their_normalized_form(make_index):
    names = ["Good_Name", "../admin", SCRIPT, "x onmouseover=alert(1)", "a&quot;b", "ok.Two"]
    body = "".join(f'<a href="/simple/x/">{name}</a>\n' for name in names)
    with HostileUpstream() as hostile:
        hostile.set("/simple/", Answer(headers={"Content-Type": HTML}, body=body.encode()))
        index = make_index(hostile.simple_url)
        response = requests.get(index.simple_url, headers={"Accept": HTML}, timeout=10)
    assert response.status_code == 200
    assert_simple_headers(response)
    parsed = Anchors(response.text)
    assert [a["href"] for a in parsed.anchors] == ["good-name/", "ok-two/"]
    assert parsed.texts == ["Good_Name", "ok.Two"]
    assert "script" not in parsed.tags


def test_error_pages_and_the_admin_login_page_forbid_script(site):
    missing = requests.get(site.url + "/nowhere", timeout=10)
    assert missing.status_code == 404
    assert_simple_headers(missing)
    login = requests.get(site.url + "/admin/login", timeout=10)
    assert login.headers["Content-Security-Policy"] == ADMIN_POLICY
    assert login.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/admin/nowhere", "/admin/static/admin.css"):
        response = requests.get(site.url + path, timeout=10)
        assert response.headers["Content-Security-Policy"] == ADMIN_POLICY, path


def watch(tab: Page) -> list[str]:
    """Every dialog the page opens (an ``alert`` that ran), dismissed, and every console
    error (a policy violation: something tried to run or load that our pages never need)."""
    seen: list[str] = []

    def dialog(opened) -> None:  # type: ignore[no-untyped-def]
        seen.append(f"dialog: {opened.message}")
        opened.dismiss()

    tab.on("dialog", dialog)
    tab.on("console", lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None)
    return seen


def test_the_admin_project_page_shows_the_markup_as_text_and_runs_none_of_it(
    site: RunningIndex,
    page: Page,
) -> None:
    dialogs = watch(page)
    requests.get(site.simple_url + "evil/", timeout=10).raise_for_status()  # cache it

    log_in(page, site)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()  # inline SVG: allowed, no script
    response = page.goto(site.url + "/admin/projects/evil/")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"] == ADMIN_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    row = page.locator("tr", has_text="evil-1.0.tar.gz")
    expect(row).to_contain_text(HOSTILE)  # shown as the text it is
    expect(page.locator("tbody img, tbody script")).to_have_count(0)
    assert page.evaluate("typeof window.pwned") == "undefined"
    for path in ADMIN_PAGES:  # what every admin page needs, the policy allows
        shown = page.goto(site.url + path)
        assert shown is not None
        assert shown.status == 200, path
        assert shown.headers["content-security-policy"] == ADMIN_POLICY, path
    assert dialogs == [], "nothing ran, and nothing the policy forbids was tried"


def test_the_project_page_in_a_browser_runs_nothing(
    site: RunningIndex,
    page: Page,
) -> None:
    dialogs = watch(page)
    response = page.goto(site.simple_url + "evil/")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-security-policy"] == SIMPLE_POLICY
    anchor = page.locator("a", has_text="evil-1.0.tar.gz")
    expect(anchor).to_have_attribute("data-yanked", HOSTILE)
    expect(anchor).to_have_attribute("data-requires-python", HOSTILE)
    expect(page.locator("img, script")).to_have_count(0)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert dialogs == [], "nothing ran, and nothing the policy forbids was tried"
