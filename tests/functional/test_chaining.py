"""A pypicache as another's upstream: its own serials, its changelog at /pypi, the JSON API."""

from __future__ import annotations

import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest
import requests

from tests.conftest import IndexFactory, RunningIndex
from tests.support.clients import clean_client_env
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.following import caught_up, follow_settings, status
from tests.support.privatedb import JSON, PASSWORD, Db, upload_url
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until


@pytest.fixture
def head(make_index: IndexFactory, upstream: FakeUpstream) -> RunningIndex:
    """The head office's pypicache, following the fake PyPI."""
    index = make_index(upstream.simple_url, name="head", **follow_settings(upstream))
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.engine.dispose()
    return index


def changelog(index: RunningIndex) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(index.url + "/pypi")


def upload(index: RunningIndex, tmp_path, name: str, version: str) -> None:
    wheel = make_wheel(name, version)
    path = tmp_path / wheel.filename
    path.write_bytes(wheel.content)
    result = twine_upload(upload_url(index), "alice", PASSWORD, path)
    assert result.returncode == 0, result.stdout + result.stderr


def versions(index: RunningIndex, name: str) -> list[str]:
    response = requests.get(f"{index.simple_url}{name}/", headers={"Accept": JSON}, timeout=30)
    return response.json()["versions"] if response.status_code == 200 else []


def test_the_changelog_tells_this_indexs_own_changes_in_order(head, upstream, tmp_path):
    with changelog(head) as proxy:
        start = proxy.changelog_last_serial()
    upload(head, tmp_path, "inhouse", "1.0")
    upstream.publish(make_wheel("public", "1.0"))
    assert versions(head, "public") == ["1.0"]
    upload(head, tmp_path, "inhouse", "1.1")

    with changelog(head) as proxy:
        entries = proxy.changelog_since_serial(start)
        last = proxy.changelog_last_serial()
        with_serial = proxy.list_packages_with_serial()
    assert [(e[0], e[3]) for e in entries] == [
        ("inhouse", "update"),
        ("public", "update"),
        ("inhouse", "update"),
    ]
    serials = [e[4] for e in entries]
    assert serials == sorted(serials) == list(range(start + 1, start + 4))
    assert last == serials[-1]
    assert with_serial == {"inhouse": serials[2], "public": serials[1]}
    page = requests.get(f"{head.simple_url}inhouse/", headers={"Accept": JSON}, timeout=30)
    assert page.headers["X-PyPI-Last-Serial"] == str(serials[2])
    assert page.json()["meta"]["_last-serial"] == serials[2]
    listed = requests.get(head.simple_url, headers={"Accept": JSON}, timeout=30).json()
    by_name = {p["name"]: p["_last-serial"] for p in listed["projects"]}
    assert by_name["inhouse"] == serials[2]
    assert listed["meta"]["_last-serial"] == serials[2]


def test_calls_it_cannot_answer_are_faults_not_errors(head):
    with changelog(head) as proxy:
        with pytest.raises(xmlrpc.client.Fault, match="does not answer"):
            proxy.release_urls("x", "1")
        with pytest.raises(xmlrpc.client.Fault, match="takes 1 parameters"):
            proxy.changelog_since_serial()
        with pytest.raises(xmlrpc.client.Fault, match="integer"):
            proxy.changelog_since_serial("7")
    # XML-RPC's <int> is read whole: a serial no database column holds is refused too.
    huge = requests.post(
        head.url + "/pypi",
        data=b"<?xml version='1.0'?><methodCall><methodName>changelog_since_serial"
        b"</methodName><params><param><value><int>99999999999999999999999</int></value>"
        b"</param></params></methodCall>",
        timeout=30,
    )
    assert huge.status_code == 200
    with pytest.raises(xmlrpc.client.Fault, match="integer"):
        xmlrpc.client.loads(huge.content)
    garbage = requests.post(head.url + "/pypi", data=b"<not xml", timeout=30)
    assert garbage.status_code == 200
    with pytest.raises(xmlrpc.client.Fault, match="not an XML-RPC call"):
        xmlrpc.client.loads(garbage.content)


def test_a_branch_pypicache_follows_the_head_offices_changes(
    make_index: IndexFactory, head, upstream, tmp_path
):
    upload(head, tmp_path, "inhouse", "1.0")
    upstream.publish(make_wheel("public", "1.0"))
    # The branch's changelog is /pypi on its upstream's host: found without a setting.
    branch = make_index(
        head.simple_url,
        name="branch",
        **{
            "pypicache.follow_method": "auto",
            "pypicache.follow_interval": "0.2",
            "pypicache.changelog_min_interval": "0",
            "pypicache.page_ttl": "3600",
        },
    )
    assert versions(branch, "inhouse") == ["1.0"]
    assert versions(branch, "public") == ["1.0"]
    assert wait_until(lambda: status(branch)["watermark"] is not None)
    assert status(branch)["method"] == "xmlrpc"

    upload(head, tmp_path, "inhouse", "2.0")  # a head-office upload
    assert wait_until(lambda: versions(branch, "inhouse") == ["1.0", "2.0"], 15)
    upstream.publish(make_wheel("public", "2.0"))  # reaches the head by its own follower
    assert caught_up(head, upstream)
    assert wait_until(lambda: versions(branch, "public") == ["1.0", "2.0"], 15)
    with changelog(head) as proxy:
        head_serial = proxy.changelog_last_serial()
    assert wait_until(lambda: status(branch)["watermark"] == head_serial, 15)


def test_the_json_api_gives_releases_with_absolute_urls_and_the_serial(head, upstream, tmp_path):
    upload(head, tmp_path, "inhouse", "1.0")
    upload(head, tmp_path, "inhouse", "1.1")
    response = requests.get(head.url + "/pypi/inhouse/json", timeout=30)
    assert response.status_code == 200
    data = response.json()
    assert data["info"]["name"] == "inhouse"
    assert data["info"]["version"] == "1.1"
    assert set(data["releases"]) == {"1.0", "1.1"}
    assert response.headers["X-PyPI-Last-Serial"] == str(data["last_serial"])
    (latest,) = data["urls"]
    assert latest["url"] == f"{head.url}/packages/inhouse/{latest['filename']}"
    wheel = make_wheel("inhouse", "1.1")
    assert latest["digests"] == {"sha256": wheel.sha256}
    assert latest["size"] == wheel.size
    assert requests.get(latest["url"], timeout=30).content == wheel.content
    assert requests.get(head.url + "/pypi/nosuch/json", timeout=30).status_code == 404
    moved = requests.get(head.url + "/pypi/InHouse/json", allow_redirects=False, timeout=30)
    assert moved.status_code == 301


def test_bandersnatch_mirrors_a_pypicache(head, upstream, tmp_path):
    upload(head, tmp_path, "inhouse", "1.0")
    public = make_wheel("public", "1.0")
    upstream.publish(public)
    assert versions(head, "public") == ["1.0"]
    mirror = tmp_path / "mirror"
    config = tmp_path / "bandersnatch.conf"
    config.write_text(
        "[mirror]\n"
        f"directory = {mirror}\n"
        f"master = {head.url}\n"
        "api-method = simple\n"
        "allow-non-https = true\n"
        "json = true\n"
        "release-files = true\n"
        "simple-format = ALL\n"
        "storage-backend = filesystem\n"
        "hash-index = false\n"
        "stop-on-error = true\n"
        "timeout = 30\n"
        "global-timeout = 300\n"
        "workers = 2\n"
        "compare-method = hash\n"
        "\n[plugins]\nenabled =\n    allowlist_project\n"
        "\n[allowlist]\npackages =\n    inhouse\n    public\n"
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "bandersnatch"), "-c", str(config), "mirror"],
        capture_output=True,
        text=True,
        env=clean_client_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    web = mirror / "web"
    inhouse = make_wheel("inhouse", "1.0")
    files = {p.name: p.read_bytes() for p in (web / "packages").rglob("*.whl")}
    assert files == {inhouse.filename: inhouse.content, public.filename: public.content}
    page = (web / "simple" / "inhouse" / "index.html").read_text()
    assert inhouse.filename in page
    with changelog(head) as proxy:
        serial = proxy.list_packages_with_serial()["inhouse"]
    assert f"<!--SERIAL {serial}-->" in page
