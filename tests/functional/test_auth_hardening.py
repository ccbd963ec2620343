"""Logins against attackers: rate limits, and revocations that count on every host at once.

Two hosts here are two app instances on one database, each with its own data dir and its
own in-process credential cache, as two machines behind a load balancer would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import requests

from pypicache.auth.ratelimit import FAILURES_PER_ADDRESS, FAILURES_PER_USER, WINDOW_SECONDS
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cli import run_pypicache
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.privatedb import JSON, Db, upload_url
from tests.support.uploads import form_fields, post_upload
from tests.support.waiting import wait_until

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse"
# What the issue promises: a revoked token, a logout, a new password count everywhere within.
EVERYWHERE_WITHIN = 5.0


@pytest.fixture
def hosts(
    make_index: IndexFactory, upstream: FakeUpstream, fresh_database_url: Callable[[], str]
) -> Iterator[tuple[RunningIndex, RunningIndex, Db]]:
    """Two hosts with read_auth on one database, a user and an admin, a cached page."""
    url = fresh_database_url()
    shared = {"sqlalchemy.url": url, "pypicache.read_auth": "true"}
    a = make_index(upstream.simple_url, "host-a", **shared)
    b = make_index(upstream.simple_url, "host-b", **shared)
    db = Db(a)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("root", PASSWORD, admin=True)
    upstream.publish(make_wheel("guarded", "1.0"))
    yield a, b, db
    db.engine.dispose()


def page(index: RunningIndex, auth: tuple[str, str] | None) -> requests.Response:
    return requests.get(
        index.simple_url + "guarded/", headers={"Accept": JSON}, auth=auth, timeout=10
    )


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def log_in(index: RunningIndex, user: str, password: str) -> requests.Session:
    """The admin page's login form, as a browser posts it."""
    browser = requests.Session()
    form = browser.get(index.url + "/admin/login", timeout=10)
    answer = browser.post(
        index.url + "/admin/login",
        data={"username": user, "password": password, "csrf_token": csrf_token(form.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303, answer.text
    return browser


def admin_status(index: RunningIndex, cookies: dict[str, str]) -> int:
    """200 for a live admin session; 303 (to the login page) for anything else."""
    return requests.get(
        index.url + "/admin/", cookies=cookies, allow_redirects=False, timeout=10
    ).status_code


# -- revocations count on every host within seconds --------------------------------------------


def test_a_token_revoked_with_the_cli_is_refused_by_both_hosts_within_5_seconds(hosts):
    a, b, db = hosts
    token = db.accounts.create_token("alice", "ci")
    for host in (a, b):  # the page is fetched, then served from the hot path: both cache it
        for _ in range(2):
            assert page(host, ("__token__", token)).status_code == 200
    token_id = db.accounts.tokens("alice")[0].id

    result = run_pypicache(a.settings, "token", "revoke", str(token_id))
    assert result.returncode == 0, result.stderr

    for host in (a, b):
        assert wait_until(
            lambda host=host: page(host, ("__token__", token)).status_code == 401,
            timeout=EVERYWHERE_WITHIN,
        ), "a revoked token must stop working everywhere within 5 s"


def test_a_password_and_a_role_changed_elsewhere_count_within_5_seconds(hosts):
    _a, b, db = hosts
    assert page(b, ("alice", PASSWORD)).status_code == 200
    response = requests.get(b.url + "/admin/users/", auth=("alice", PASSWORD), timeout=10)
    assert response.status_code == 403

    db.accounts.set_admin("alice", True)  # another process: b's cache does not hear of it
    assert wait_until(
        lambda: (
            requests.get(b.url + "/admin/users/", auth=("alice", PASSWORD), timeout=10).status_code
            == 200
        ),
        timeout=EVERYWHERE_WITHIN,
    )
    db.accounts.set_password("alice", NEW_PASSWORD)
    assert wait_until(
        lambda: page(b, ("alice", PASSWORD)).status_code == 401, timeout=EVERYWHERE_WITHIN
    )
    assert page(b, ("alice", NEW_PASSWORD)).status_code == 200


def test_logging_out_on_one_host_ends_a_copied_cookie_on_the_other(hosts):
    a, b, _db = hosts
    browser = log_in(a, "root", PASSWORD)
    copied = browser.cookies.get_dict()
    assert admin_status(b, copied) == 200, "one login is good on every host"

    dashboard = browser.get(a.url + "/admin/", timeout=10)
    logout = browser.post(
        a.url + "/admin/logout",
        data={"csrf_token": csrf_token(dashboard.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert logout.status_code == 303

    assert admin_status(a, copied) == 303, "the host that logged out refuses it at once"
    assert wait_until(lambda: admin_status(b, copied) == 303, timeout=EVERYWHERE_WITHIN)


def test_a_new_password_ends_the_sessions_on_every_host(hosts):
    a, b, db = hosts
    cookies = log_in(a, "root", PASSWORD).cookies.get_dict()
    assert admin_status(b, cookies) == 200
    db.accounts.set_password("root", NEW_PASSWORD)
    for host in (a, b):
        assert wait_until(
            lambda host=host: admin_status(host, cookies) == 303, timeout=EVERYWHERE_WITHIN
        )


# -- rate limits -------------------------------------------------------------------------------


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream) -> Iterator[tuple[RunningIndex, Db]]:
    index = make_index(upstream.simple_url, **{"pypicache.read_auth": "true"})
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("root", PASSWORD, admin=True)
    upstream.publish(make_wheel("guarded", "1.0"))
    yield index, db
    db.engine.dispose()


def assert_limited(response: requests.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= WINDOW_SECONDS
    assert "try again" in response.text


def test_uploads_with_a_guessed_password_are_refused_with_429_after_the_limit(site):
    index, _db = site
    wheel = make_wheel("acme-utils", "1.0")

    def upload(password: str) -> requests.Response:
        return post_upload(
            upload_url(index),
            ("alice", password),
            form_fields(wheel),
            wheel.filename,
            wheel.content,
        )

    for attempt in range(FAILURES_PER_USER):
        assert upload(f"guess {attempt}").status_code == 401
    # Now even the right password is not checked: the attacker learns nothing more.
    assert_limited(upload(PASSWORD))
    assert page(index, ("alice", PASSWORD)).status_code == 429, "reads are limited too"
    # Other users, from the same address, are not locked out by alice's attacker.
    assert page(index, ("root", PASSWORD)).status_code == 200


def test_each_refused_read_counts_once_though_the_hot_path_and_pyramid_both_look(site):
    """A failed read on the hot path goes on to Pyramid, which asks for the identity again
    (permission, then the 401 page): still one password check, one failure counted."""
    index, _db = site
    assert page(index, ("alice", PASSWORD)).status_code == 200  # now cached: the hot path
    for attempt in range(FAILURES_PER_USER):
        assert page(index, ("alice", f"guess {attempt}")).status_code == 401, attempt
    assert_limited(page(index, ("alice", f"guess {FAILURES_PER_USER}")))


def test_a_successful_login_resets_the_users_count(site):
    index, _db = site
    for round_ in range(2):
        for attempt in range(FAILURES_PER_USER - 1):
            assert page(index, ("alice", f"guess {round_}.{attempt}")).status_code == 401
        assert page(index, ("alice", PASSWORD)).status_code == 200
    assert page(index, ("alice", "one more guess")).status_code == 401


def test_one_address_spraying_user_names_is_limited(site):
    index, db = site
    names = [f"user{i}" for i in range(FAILURES_PER_ADDRESS)]
    for name in names:
        assert page(index, (name, "guess")).status_code == 401
    assert_limited(page(index, ("root", PASSWORD)))
    assert_limited(page(index, ("__token__", db.accounts.create_token("root"))))


def test_the_login_form_is_limited_per_user_and_says_so(site):
    index, _db = site
    browser = requests.Session()
    token = csrf_token(browser.get(index.url + "/admin/login", timeout=10).text)

    def attempt(password: str) -> requests.Response:
        return browser.post(
            index.url + "/admin/login",
            data={"username": "root", "password": password, "csrf_token": token},
            allow_redirects=False,
            timeout=10,
        )

    for guess in range(FAILURES_PER_USER):
        wrong = attempt(f"guess {guess}")
        assert wrong.status_code == 400
        assert "Wrong user name or password" in wrong.text
    limited = attempt(PASSWORD)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= WINDOW_SECONDS
    assert "Too many failed logins" in limited.text
    assert admin_status(index, browser.cookies.get_dict()) == 303, "not logged in"


# -- what an admin's browser may be sent to ------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/projects/?q=%ff", "/admin/audit/?action=%fe%ff"])
def test_a_query_string_that_is_not_utf8_is_a_400_on_admin_pages(site, path):
    index, _db = site
    browser = log_in(index, "root", PASSWORD)
    answer = browser.get(index.url + path, allow_redirects=False, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "UTF-8" in answer.text
