"""Several ``pypicache serve`` processes on one database and one blob store act as one index.

On PostgreSQL (``PYPICACHE_TEST_DATABASE=postgresql``) these are hosts behind a load
balancer; on SQLite, processes of one host sharing its database file.  The blob store is an
S3 bucket, or one directory every process mounts.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from pypicache import db
from pypicache.auth.accounts import Accounts
from pypicache.models import FillClaim
from tests.support.clients import installed, make_venv, pip_install, uv_pip_install
from tests.support.databases import configured_kind
from tests.support.dists import Dist, make_large_wheel, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.serveprocess import ServeProcess
from tests.support.trees import EXPECTED, publish_app_tree
from tests.support.waiting import wait_until

# FillClaims.lease: a killed process's download is taken over after this long.
CLAIM_LEASE = 10.0

ADMIN_PASSWORD = "correct horse battery"

Deployment = Callable[..., ServeProcess]


@dataclass
class SharedStorage:
    """The blob store every process of the deployment uses."""

    env: dict[str, str]
    data_dir: Callable[[str], Path]  # per process: its own, or the shared directory
    objects: Callable[[], list[str]]  # names of the stored blobs


@pytest.fixture(params=["s3", "shared-directory"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> SharedStorage:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_storage")
        return SharedStorage(
            env=bucket.environ,
            data_dir=lambda name: tmp_path / name,
            objects=lambda: sorted(bucket.object_keys()),
        )
    shared = tmp_path / "shared"
    return SharedStorage(
        env={},
        data_dir=lambda _name: shared,
        objects=lambda: [p.name for p in (shared / "blobs").rglob("*") if p.is_file()],
    )


@pytest.fixture
def shared_database(fresh_database_url: Callable[[], str]) -> str:
    return fresh_database_url()


@pytest.fixture
def deployment(
    upstream: FakeUpstream, shared_database: str, shared_storage: SharedStorage
) -> Iterator[Deployment]:
    """Start processes as separate hosts would run them, on the shared database and store."""
    started: list[ServeProcess] = []

    def start(name: str, **env: str) -> ServeProcess:
        process = ServeProcess(
            name,
            shared_storage.data_dir(name),
            {
                "PYPICACHE_DATABASE_URL": shared_database,
                **shared_storage.env,
                "PYPICACHE_UPSTREAM_URL": upstream.simple_url,
                "PYPICACHE_CHANGELOG_URL": upstream.xmlrpc_url,
                "PYPICACHE_FOLLOW_METHOD": "off",
                "PYPICACHE_UPSTREAM_TIMEOUT": "5",
                "PYPICACHE_UPSTREAM_CONNECT_TIMEOUT": "2",
                "PYPICACHE_UPSTREAM_RETRIES": "1",
                "PYPICACHE_PAGE_TTL": "3600",
                **env,
            },
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def tree(upstream: FakeUpstream) -> FakeUpstream:
    return publish_app_tree(upstream)


def file_fetches(upstream: FakeUpstream) -> list[str]:
    return [r.path for r in upstream.find("GET", "/packages/")]


def file_misses(process: ServeProcess) -> float:
    """How many file downloads this process started (``pypicache_cache_lookups``)."""
    text = requests.get(process.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if (
            line.startswith("pypicache_cache_lookups_total{")
            and 'kind="file",result="miss"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def file_url(process: ServeProcess, project: str, filename: str) -> str:
    """Where the process's own page links the file (it also makes the page known)."""
    page = requests.get(
        f"{process.simple_url}{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=10,
    )
    page.raise_for_status()
    (url,) = [f["url"] for f in page.json()["files"] if f["filename"] == filename]
    return requests.compat.urljoin(page.url, url)


class Download(threading.Thread):
    """A client download running while the test arranges the race around it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.status: int | None = None
        self.body = b""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            response = requests.get(self.url, timeout=60)
            self.status, self.body = response.status_code, response.content
        except requests.RequestException as exc:
            self.error = exc


def test_a_file_cached_by_one_process_is_served_by_the_other(
    deployment: Deployment, tree: FakeUpstream, tmp_path: Path, shared_storage: SharedStorage
):
    first, second = deployment("host-a"), deployment("host-b")

    cold = pip_install(make_venv(tmp_path / "via-a"), first.simple_url, "app")
    assert cold.returncode == 0, cold.stderr
    assert installed(tmp_path / "via-a" / "bin" / "python") == EXPECTED
    fetched = file_fetches(tree)
    assert fetched
    assert len(fetched) == len(set(fetched)), f"fetched twice: {fetched}"
    assert len(shared_storage.objects()) >= len(EXPECTED)

    tree.clear_log()
    warm = uv_pip_install(make_venv(tmp_path / "via-b"), second.simple_url, "app")
    assert warm.returncode == 0, warm.stderr
    assert installed(tmp_path / "via-b" / "bin" / "python") == EXPECTED
    assert tree.requests == [], "the second host found pages and files in the shared cache"


def race_for_one_file(
    deployment: Deployment, upstream: FakeUpstream, wheel: Dist
) -> tuple[ServeProcess, Download, Download]:
    """Host-a downloading ``wheel`` from a stalled upstream, host-b waiting for the same file.

    Returns host-a and both downloads; the upstream stays stalled until the test releases it.
    """
    upstream.publish(wheel)
    first, second = deployment("host-a"), deployment("host-b")
    # Both know the page: the race is about the file.
    urls = [file_url(process, "big", wheel.filename) for process in (first, second)]
    upstream.stall(upstream.file(wheel.filename).path)
    via_first = Download(urls[0])
    via_first.start()
    assert upstream.wait_stalled(1), "host-a asked the upstream"
    via_second = Download(urls[1])
    via_second.start()
    assert wait_until(lambda: file_misses(second) >= 1, 10), "host-b is waiting for the file"
    return first, via_first, via_second


def received(download: Download, timeout: float) -> bytes:
    download.join(timeout)
    assert download.error is None
    assert download.status == 200
    return download.body


def test_concurrent_misses_on_two_processes_fetch_and_store_once(
    deployment: Deployment, upstream: FakeUpstream, shared_storage: SharedStorage
):
    wheel = make_large_wheel("big", "1.0", 3 * 1024 * 1024)
    _, via_first, via_second = race_for_one_file(deployment, upstream, wheel)
    upstream.release()

    for download in (via_first, via_second):
        assert hashlib.sha256(received(download, 60)).hexdigest() == wheel.sha256
    assert upstream.count("GET", upstream.file(wheel.filename).path) == 1, "one fetch for both"
    assert [name.rsplit("/", 1)[-1] for name in shared_storage.objects()] == [wheel.sha256]


def test_a_killed_process_download_is_taken_over(
    deployment: Deployment, upstream: FakeUpstream, shared_database: str
):
    wheel = make_large_wheel("big", "1.0", 1024 * 1024)
    first, _, survivor = race_for_one_file(deployment, upstream, wheel)
    first.kill()
    upstream.release()

    assert hashlib.sha256(received(survivor, CLAIM_LEASE + 30)).hexdigest() == wheel.sha256
    fetches = upstream.count("GET", upstream.file(wheel.filename).path)
    assert fetches == 2, "host-b fetched it again after host-a died"
    engine = create_engine(shared_database)

    def claims() -> list:
        with engine.connect() as connection:
            return list(connection.execute(select(FillClaim.key)).all())

    try:
        # The survivor releases its claim just after the last byte went out: wait for it.
        assert wait_until(lambda: claims() == [], timeout=5), "no claim left"
    finally:
        engine.dispose()


# Page claims are in the database: which store the hosts share does not matter here.
@pytest.mark.parametrize("shared_storage", ["shared-directory"], indirect=True)
def test_concurrent_page_misses_on_two_processes_ask_the_upstream_once(
    deployment: Deployment, upstream: FakeUpstream
):
    upstream.publish(make_wheel("paged", "1.0"))
    first, second = deployment("host-a"), deployment("host-b")
    upstream.stall("/simple/paged/")
    via_first = Download(f"{first.simple_url}paged/")
    via_first.start()
    assert upstream.wait_stalled(1), "host-a asked the upstream"
    via_second = Download(f"{second.simple_url}paged/")
    via_second.start()
    assert wait_until(lambda: "fetching the page of paged" in second.log_tail(), 10)
    upstream.release()

    pages = [received(download, 30) for download in (via_first, via_second)]
    assert pages[0] == pages[1]
    assert b"paged-1.0-py3-none-any.whl" in pages[0]
    assert upstream.count("GET", "/simple/paged/") == 1, "one upstream fetch for both hosts"


# The lease is in the database: which store the hosts share does not matter here.
@pytest.mark.parametrize("shared_storage", ["shared-directory"], indirect=True)
def test_exactly_one_process_follows_and_another_takes_over_after_kill(
    deployment: Deployment, upstream: FakeUpstream
):
    upstream.publish(make_wheel("watched", "1.0"))
    follow = {
        "PYPICACHE_FOLLOW_METHOD": "xmlrpc",
        "PYPICACHE_FOLLOW_INTERVAL": "0.5",
        "PYPICACHE_CHANGELOG_MIN_INTERVAL": "0",
    }
    processes = [deployment("host-a", **follow), deployment("host-b", **follow)]
    for process in processes:
        assert requests.get(f"{process.simple_url}watched/", timeout=10).status_code == 200

    def leader() -> ServeProcess | None:
        reports = [(p, p.status()) for p in processes if p.alive()]
        leaders = {report["leader"] for _, report in reports}
        if len(leaders) != 1 or None in leaders:
            return None
        (name,) = leaders
        return next((p for p, report in reports if report["this_process"] == name), None)

    assert wait_until(lambda: leader() is not None, 15), "one leader, the same for both"
    old = leader()
    assert old is not None
    assert wait_until(lambda: old.status()["watermark"] == upstream.serial, 15)

    old.kill()
    (survivor,) = [p for p in processes if p is not old]
    upstream.publish(make_wheel("watched", "2.0"))
    # The lease lasts 3 * follow_interval + 5 seconds unrenewed; then the survivor leads.
    bound = 3 * 0.5 + 5 + 10
    assert wait_until(lambda: leader() is survivor, bound), survivor.status()
    assert wait_until(lambda: survivor.status()["watermark"] == upstream.serial, 15)
    page = requests.get(
        f"{survivor.simple_url}watched/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=10,
    ).json()
    assert {f["filename"] for f in page["files"]} == {
        "watched-1.0-py3-none-any.whl",
        "watched-2.0-py3-none-any.whl",
    }


def test_processes_starting_at_once_on_a_new_database_migrate_it_once(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream
):
    if configured_kind() == "postgresql":
        server = request.getfixturevalue("postgresql_server")
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        url = server.url_for(name)
    else:
        url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    processes = [
        ServeProcess(
            name,
            tmp_path / name,
            {"PYPICACHE_DATABASE_URL": url, "PYPICACHE_UPSTREAM_URL": upstream.simple_url},
        )
        for name in ("host-a", "host-b", "host-c")
    ]
    try:
        for process in processes:
            process.launch()
        for process in processes:
            process.wait_ready()
        upstream.publish(make_wheel("fresh", "1.0"))
        for process in processes:
            assert requests.get(f"{process.simple_url}fresh/", timeout=10).status_code == 200
    finally:
        for process in processes:
            process.stop()


def test_an_admin_logged_in_on_one_host_is_logged_in_on_the_others(
    tmp_path: Path, upstream: FakeUpstream, shared_database: str
):
    engine = create_engine(shared_database)
    try:
        Accounts(db.Database(engine)).add_user("root", ADMIN_PASSWORD, admin=True)
    finally:
        engine.dispose()
    hosts = [
        ServeProcess(
            name,
            tmp_path / name,  # each host its own data dir: nothing shared but the database
            {"PYPICACHE_DATABASE_URL": shared_database, "PYPICACHE_UPSTREAM_URL": "none"},
        )
        for name in ("host-a", "host-b")
    ]
    try:
        for host in hosts:
            host.start()
        browser = requests.Session()
        form = browser.get(hosts[0].url + "/admin/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        login = browser.post(
            hosts[0].url + "/admin/login",
            data={
                "csrf_token": token.group(1),
                "username": "root",
                "password": ADMIN_PASSWORD,
                "next": "/admin/",
            },
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 303
        # Cookies ignore ports: the load balancer's other host gets the same cookie.
        for host in hosts:
            dashboard = browser.get(host.url + "/admin/", allow_redirects=False, timeout=10)
            assert dashboard.status_code == 200, f"{host.name}: {dashboard.headers}"
    finally:
        for host in hosts:
            host.stop()
