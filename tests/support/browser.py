"""Playwright fixtures: Debian's Chromium, headless, talking to nothing but the index under test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.privatedb import PASSWORD

if TYPE_CHECKING:  # tests.conftest imports this module for its fixtures
    from tests.conftest import RunningIndex

CHROMIUM = os.environ.get("PYPICACHE_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that talks to anything but the index under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per module; skipped (failed on CI) when it is not installed."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or PYPICACHE_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context per test: no cookies carried between tests."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def log_in(page: Page, index: RunningIndex, user: str = "root", password: str = PASSWORD) -> None:
    """Log in through the admin page's form, as a person would."""
    page.goto(index.url + "/admin/")
    page.fill("#username", user)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
