"""Several upstreams: priority order, routes, one upstream alone, and outages that never
switch a name to another source."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import IndexFactory, RunningIndex
from tests.support.browser import log_in
from tests.support.clients import (
    clean_client_env,
    find_uv,
    installed,
    make_venv,
    pip_install,
    uv_pip_install,
)
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.following import follow_settings, status
from tests.support.privatedb import JSON, PASSWORD, Db, upload_url
from tests.support.uploads import twine_upload
from tests.support.waiting import wait_until


@pytest.fixture
def vendor() -> Iterator[FakeUpstream]:
    """A second upstream the way a vendor's static index is: HTML only, no upload times,
    no serials, no changelog."""
    with FakeUpstream() as fake:
        fake.html_only = True
        fake.omit_serial = True
        yield fake


def start(make_index: IndexFactory, first: FakeUpstream, second: FakeUpstream, **more: str):
    return make_index(
        None,
        **{"pypicache.upstreams": f"pypi={first.simple_url} vendor={second.simple_url}", **more},
    )


def files_of(http: requests.Session, url: str) -> dict[str, dict]:
    response = http.get(url, headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text)
    return {f["filename"]: f for f in response.json()["files"]}


def fetched(fake: FakeUpstream, prefix: str) -> list[str]:
    return [r.path for r in fake.requests if r.path.startswith(prefix)]


def download(http: requests.Session, page_url: str, entry: dict) -> bytes:
    response = http.get(requests.compat.urljoin(page_url, entry["url"]), timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def test_a_name_missing_upstream_comes_from_the_next_upstream_that_has_it(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    only_vendor = make_wheel("vendorlib", "1.0")
    vendor.publish(only_vendor)
    upstream.publish(make_wheel("common", "1.0"))
    vendor.publish(make_wheel("common", "9.0"))
    index = start(make_index, upstream, vendor)

    url = f"{index.simple_url}vendorlib/"
    files = files_of(http, url)
    assert list(files) == [only_vendor.filename]
    assert download(http, url, files[only_vendor.filename]) == only_vendor.content
    assert fetched(upstream, "/simple/vendorlib/"), "the first upstream was asked first"

    # The first upstream that has a name wins, however new the others' versions are.
    assert list(files_of(http, f"{index.simple_url}common/")) == ["common-1.0-py3-none-any.whl"]
    assert not fetched(vendor, "/simple/common/"), "nobody asks past the first that has it"


def test_a_routed_name_comes_from_its_upstream_only(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    upstream.publish(make_wheel("torch", "2.0"))  # the same name on the first upstream
    vendor.publish(make_wheel("torch", "1.0"))
    upstream.publish(make_wheel("torch-helper", "1.0"))
    index = start(
        make_index, upstream, vendor, **{"pypicache.routes": "torch=vendor Torch_X*=vendor"}
    )

    assert list(files_of(http, f"{index.simple_url}torch/")) == ["torch-1.0-py3-none-any.whl"]
    assert not fetched(upstream, "/simple/torch/"), "a routed name is never asked elsewhere"

    # Missing from its upstream, a routed name is missing, although another upstream has it.
    upstream.publish(make_wheel("torch-xla", "1.0"))
    response = http.get(f"{index.simple_url}torch-xla/", headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 404
    assert not fetched(upstream, "/simple/torch-xla/")
    # Names the routes do not match resolve by priority as before.
    assert list(files_of(http, f"{index.simple_url}torch-helper/")) == [
        "torch_helper-1.0-py3-none-any.whl"
    ]


def test_an_outage_never_switches_a_name_to_the_next_upstream(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    upstream.publish(make_wheel("shared", "1.0"))
    vendor.publish(make_wheel("shared", "6.6"))  # what an attacker would publish
    vendor.publish(make_wheel("fresh", "6.6"))
    upstream.publish(make_wheel("fresh", "1.0"))
    index = start(make_index, upstream, vendor, **{"pypicache.page_ttl": "0"})
    first = list(files_of(http, f"{index.simple_url}shared/"))

    upstream.down = True
    # Cached from the first upstream: its stale copy, never the next upstream's project.
    response = http.get(f"{index.simple_url}shared/", headers={"Accept": JSON}, timeout=30)
    assert response.status_code == 200
    assert [f["filename"] for f in response.json()["files"]] == first
    assert "no-store" in response.headers["Cache-Control"]
    # Not cached: an error, never the next upstream's project.
    response = http.get(f"{index.simple_url}fresh/", headers={"Accept": JSON}, timeout=30)
    assert response.status_code in (502, 504)
    assert not fetched(vendor, "/simple/"), "the next upstream was never asked"


def test_one_filename_with_other_bytes_in_two_upstreams_serves_each_its_own(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    ours = make_wheel("twin", "1.0")
    theirs = make_wheel("twin", "1.0", extra_files={"twin/vendor.py": b"BUILD = 'vendor'\n"})
    assert ours.filename == theirs.filename
    assert ours.sha256 != theirs.sha256
    upstream.publish(ours)
    vendor.publish(theirs)
    index = start(make_index, upstream, vendor)

    main_url = f"{index.simple_url}twin/"
    alone_url = f"{index.url}/u/vendor/simple/twin/"
    main, alone = files_of(http, main_url)[ours.filename], files_of(http, alone_url)[ours.filename]
    assert main["hashes"]["sha256"] == ours.sha256
    assert alone["hashes"]["sha256"] == theirs.sha256
    # Both downloads fill their own cache entry; then both come from the store.
    for _ in range(2):
        assert download(http, main_url, main) == ours.content
        assert download(http, alone_url, alone) == theirs.content
    assert len(fetched(upstream, "/packages/")) == 1
    assert len(fetched(vendor, "/packages/")) == 1


def test_a_wrong_file_from_the_second_upstream_is_refused_like_any_other(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    wheel = make_wheel("wrongbytes", "1.0")
    vendor.publish(wheel)
    vendor.wrong_bytes(wheel.filename)
    index = start(make_index, upstream, vendor)
    url = f"{index.simple_url}wrongbytes/"
    entry = files_of(http, url)[wheel.filename]
    try:
        response = http.get(requests.compat.urljoin(url, entry["url"]), timeout=30)
        body = response.content
    except requests.exceptions.ChunkedEncodingError:
        body = b""  # cut off before the last byte: a client never sees a whole wrong file
    assert hashlib.sha256(body).hexdigest() != wheel.sha256
    assert body != wheel.content
    assert not any(
        p.is_file() for p in index.settings.blob_dir.rglob("*") if p.name == wheel.sha256
    )


def test_one_upstream_alone_lists_and_serves_only_its_own_names(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http, tmp_path: Path
):
    upstream.publish(make_wheel("frompypi", "1.0"))
    vendor.publish(make_wheel("fromvendor", "1.0"))
    index = start(make_index, upstream, vendor)

    listed = http.get(f"{index.url}/u/vendor/simple/", headers={"Accept": JSON}, timeout=30)
    assert [p["name"] for p in listed.json()["projects"]] == ["fromvendor"]
    everything = http.get(f"{index.simple_url}", headers={"Accept": JSON}, timeout=30)
    assert {p["name"] for p in everything.json()["projects"]} == {"frompypi", "fromvendor"}

    alone = http.get(f"{index.url}/u/vendor/simple/frompypi/", headers={"Accept": JSON}, timeout=30)
    assert alone.status_code == 404, "one upstream alone never falls through to another"
    assert http.get(f"{index.url}/u/nosuch/simple/", timeout=30).status_code == 404
    assert http.get(f"{index.url}/u/nosuch/simple/x/", timeout=30).status_code == 404
    redirect = http.get(
        f"{index.url}/u/vendor/simple/FromVendor/", allow_redirects=False, timeout=30
    )
    assert redirect.status_code == 301
    assert redirect.headers["Location"].endswith("/u/vendor/simple/fromvendor/")


def test_a_private_project_shadows_every_upstream_but_not_one_upstream_alone(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http, tmp_path: Path
):
    vendor.publish(make_wheel("inhouse", "5.0"))
    index = start(make_index, upstream, vendor)
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("root", PASSWORD, admin=True)
    private = make_wheel("inhouse", "1.0")
    path = tmp_path / private.filename
    path.write_bytes(private.content)

    # The name is the second upstream's: only an admin may make it private.
    refused = twine_upload(upload_url(index), "alice", PASSWORD, path)
    assert refused.returncode != 0
    assert "only an admin" in refused.stdout + refused.stderr
    result = twine_upload(upload_url(index), "root", PASSWORD, path)
    assert result.returncode == 0, result.stdout + result.stderr
    db.engine.dispose()

    assert list(files_of(http, f"{index.simple_url}inhouse/")) == [private.filename]
    assert list(files_of(http, f"{index.url}/u/vendor/simple/inhouse/")) == [
        "inhouse-5.0-py3-none-any.whl"
    ]


@pytest.mark.parametrize("installer", [pip_install, uv_pip_install], ids=["pip", "uv"])
def test_pip_and_uv_install_from_two_upstreams_through_one_index(
    make_index: IndexFactory,
    upstream: FakeUpstream,
    vendor: FakeUpstream,
    tmp_path: Path,
    installer,
):
    upstream.publish(make_wheel("app", "1.0", requires_dist=["accel>=2", "util"]))
    upstream.publish(make_wheel("util", "1.0"))
    upstream.publish(make_wheel("accel", "1.0"))  # the public one a route keeps out
    vendor.publish(make_wheel("accel", "2.0", requires_dist=["util"]))
    index = start(make_index, upstream, vendor, **{"pypicache.routes": "accel=vendor"})

    python = make_venv(tmp_path / "venv")
    result = installer(python, index.simple_url, "app")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"app": "1.0", "accel": "2.0", "util": "1.0"}
    assert not fetched(upstream, "/simple/accel/")


def test_uv_pins_a_package_to_one_upstream_with_an_explicit_index(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, tmp_path: Path
):
    upstream.publish(make_wheel("pinned", "9.0"))  # newer, but not the source chosen
    vendor.publish(make_wheel("pinned", "1.0"))
    upstream.publish(make_wheel("plain", "1.0"))
    index: RunningIndex = start(make_index, upstream, vendor)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f"""[project]
name = "consumer"
version = "0"
requires-python = ">=3.9"
dependencies = ["pinned", "plain"]

[tool.uv]
package = false

[[tool.uv.index]]
name = "cache"
url = "{index.simple_url}"
default = true

[[tool.uv.index]]
name = "vendor"
url = "{index.url}/u/vendor/simple/"
explicit = true

[tool.uv.sources]
pinned = {{ index = "vendor" }}
"""
    )
    env = clean_client_env()
    env.pop("UV_NO_CONFIG", None)  # the project's own pyproject.toml is the config here
    result = subprocess.run(
        [find_uv(), "sync", "--no-cache", "--python", str(make_venv(tmp_path / "py"))],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lock = (project / "uv.lock").read_text()
    assert f'source = {{ registry = "{index.url}/u/vendor/simple/" }}' in lock
    assert installed(project / ".venv" / "bin" / "python") == {"pinned": "1.0", "plain": "1.0"}


def test_each_upstream_is_followed_by_its_own_follower_the_way_it_allows(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    with FakeUpstream() as second:
        upstream.publish(make_wheel("lib-a", "1.0"))
        second.publish(make_wheel("lib-b", "1.0"))
        index = make_index(
            None,
            **follow_settings(upstream),
            **{
                "pypicache.upstreams": f"pypi={upstream.simple_url} second={second.simple_url}"
                f" static={vendor.simple_url}",
                # The second upstream's changelog is found at /pypi on its host by itself.
                "pypicache.changelogs": "static=none",
            },
        )
        assert list(files_of(http, f"{index.simple_url}lib-a/")) == ["lib_a-1.0-py3-none-any.whl"]
        assert list(files_of(http, f"{index.simple_url}lib-b/")) == ["lib_b-1.0-py3-none-any.whl"]

        def each() -> dict:
            return status(index)["upstreams"]

        assert wait_until(
            lambda: (
                each()["pypi"]["watermark"] == upstream.serial
                and each()["second"]["watermark"] == second.serial
                and each()["static"]["method"] == "page-ttl"
            )
        ), each()
        assert each()["second"]["method"] == "xmlrpc"
        assert each()["static"]["last_error"] is None
        assert each()["static"]["url"] == vendor.simple_url

        second.publish(make_wheel("lib-b", "2.0"))
        upstream.publish(make_wheel("lib-a", "2.0"))
        assert wait_until(lambda: len(files_of(http, f"{index.simple_url}lib-b/")) == 2)
        assert wait_until(lambda: len(files_of(http, f"{index.simple_url}lib-a/")) == 2)
        assert wait_until(lambda: status(index)["watermark"] == upstream.serial)
        assert status(index)["upstreams"]["second"]["watermark"] == second.serial


def test_the_admin_page_shows_each_upstream_and_where_a_project_is_cached_from(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http, page: Page
):
    vendor.publish(make_wheel("vendorlib", "1.0"))
    index = start(make_index, upstream, vendor)
    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.engine.dispose()
    files_of(http, f"{index.simple_url}vendorlib/")

    log_in(page, index)
    card = page.locator("#upstreams")
    expect(card).to_contain_text("pypi")
    expect(card).to_contain_text(vendor.simple_url)
    page.goto(f"{index.url}/admin/projects/vendorlib/")
    expect(page.locator("h1")).to_contain_text("cached from vendor")


def test_a_static_index_without_upload_times_gets_the_times_files_were_first_seen(
    make_index: IndexFactory,
    upstream: FakeUpstream,
    vendor: FakeUpstream,
    http,
    page: Page,
    tmp_path: Path,
):
    vendor.publish(make_wheel("static", "1.0"))
    index = start(make_index, upstream, vendor, **{"pypicache.page_ttl": "0"})
    url = f"{index.simple_url}static/"
    before = datetime.now(UTC)
    first = files_of(http, url)["static-1.0-py3-none-any.whl"]["upload-time"]
    seen = datetime.fromisoformat(first.replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= seen <= datetime.now(UTC)

    assert wait_until(lambda: datetime.now(UTC) - seen > timedelta(seconds=1.5), timeout=5)
    cutoff = datetime.now(UTC) - timedelta(seconds=0.5)
    vendor.publish(make_wheel("static", "2.0"))
    files = files_of(http, url)  # revalidated: the new file is new, the old one is as it was
    assert files["static-1.0-py3-none-any.whl"]["upload-time"] == first
    assert files["static-2.0-py3-none-any.whl"]["upload-time"] > first

    # uv's --exclude-newer now works on an index that gives no times of its own.
    python = make_venv(tmp_path / "venv")
    result = uv_pip_install(
        python, index.simple_url, "static", extra=["--exclude-newer", cutoff.isoformat()]
    )
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"static": "1.0"}

    db = Db(index)
    db.accounts.add_user("root", PASSWORD, admin=True)
    db.engine.dispose()
    log_in(page, index)
    page.goto(f"{index.url}/admin/projects/static/")
    expect(page.locator("tr", has_text="static-1.0")).to_contain_text("first seen here")


def test_a_merged_project_has_the_files_of_every_upstream_the_first_ones_winning(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, http
):
    public = make_wheel("blend", "1.0")
    rival = make_wheel("blend", "1.0", extra_files={"blend/vendor.py": b"V = 1\n"})
    extra = make_wheel("blend", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    upstream.publish(public)
    vendor.publish(rival)  # the same filename: the first upstream's wins
    vendor.publish(extra)
    vendor.publish(make_wheel("notmerged", "2.0"))
    upstream.publish(make_wheel("notmerged", "1.0"))
    index = start(make_index, upstream, vendor, **{"pypicache.merge": "blend* other"})

    url = f"{index.simple_url}blend/"
    files = files_of(http, url)
    assert set(files) == {public.filename, extra.filename}
    assert files[public.filename]["hashes"]["sha256"] == public.sha256
    assert download(http, url, files[public.filename]) == public.content
    assert download(http, url, files[extra.filename]) == extra.content
    assert fetched(vendor, "/packages/") == [vendor.file(extra.filename).path]
    # Hot from memory now, and the same page.
    assert files_of(http, url) == files

    # A project the patterns do not name comes from the first upstream that has it.
    assert list(files_of(http, f"{index.simple_url}notmerged/")) == [
        "notmerged-1.0-py3-none-any.whl"
    ]


@pytest.mark.parametrize("installer", [pip_install, uv_pip_install], ids=["pip", "uv"])
def test_pip_and_uv_pick_from_a_merged_page(
    make_index: IndexFactory,
    upstream: FakeUpstream,
    vendor: FakeUpstream,
    tmp_path: Path,
    installer,
):
    upstream.publish(make_wheel("blend", "1.0"))
    vendor.publish(make_wheel("blend", "2.0"))
    index = start(make_index, upstream, vendor, **{"pypicache.merge": "blend"})
    python = make_venv(tmp_path / "venv")
    result = installer(python, index.simple_url, "blend")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"blend": "2.0"}


def _locker_env(tmp_path: Path) -> dict[str, str]:
    """poetry and pdm with a home of their own: no user config, caches or other indexes."""
    env = clean_client_env()
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        POETRY_NO_INTERACTION="1",
        PDM_CHECK_UPDATE="false",
        PDM_NON_INTERACTIVE="1",
    )
    return env


def _consumer(tmp_path: Path, tool_section: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        'dependencies = ["pinned", "plain"]\n\n' + tool_section
    )
    return project


@pytest.mark.parametrize("tool", ["poetry", "pdm"])
def test_poetry_and_pdm_lock_with_pypicache_primary_and_one_upstream_explicit(
    make_index: IndexFactory, upstream: FakeUpstream, vendor: FakeUpstream, tmp_path: Path, tool
):
    upstream.publish(make_wheel("pinned", "9.0"))  # newer, but not the source chosen
    pinned = make_wheel("pinned", "1.0")
    vendor.publish(pinned)
    plain = make_wheel("plain", "1.0")
    upstream.publish(plain)
    index = start(make_index, upstream, vendor)
    main, alone = index.simple_url, f"{index.url}/u/vendor/simple/"
    if tool == "poetry":
        section = (
            "[tool.poetry]\npackage-mode = false\n\n"
            f'[[tool.poetry.source]]\nname = "cache"\nurl = "{main}"\npriority = "primary"\n\n'
            f'[[tool.poetry.source]]\nname = "vendor"\nurl = "{alone}"\npriority = "explicit"\n\n'
            '[tool.poetry.dependencies]\npinned = { source = "vendor" }\n'
        )
        command = [str(Path(sys.executable).parent / "poetry"), "lock"]
        lock_name = "poetry.lock"
    else:
        section = (
            "[tool.pdm]\ndistribution = false\n\n"
            f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{main}"\n'
            'exclude_packages = ["pinned"]\n\n'
            f'[[tool.pdm.source]]\nname = "vendor"\nurl = "{alone}"\n'
            'include_packages = ["pinned"]\n'
        )
        command = [str(Path(sys.executable).parent / "pdm"), "lock"]
        lock_name = "pdm.lock"
    project = _consumer(tmp_path, section)
    env = _locker_env(tmp_path)
    env["PDM_PYTHON"] = str(make_venv(tmp_path / "py"))
    result = subprocess.run(
        command, cwd=project, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lock = (project / lock_name).read_text()
    assert pinned.sha256 in lock, "pinned from the explicit source, at its version"
    assert plain.sha256 in lock
    assert make_wheel("pinned", "9.0").sha256 not in lock


def test_a_local_tree_is_one_of_the_upstreams(
    make_index: IndexFactory, upstream: FakeUpstream, tmp_path: Path, http
):
    tree = tmp_path / "tree"
    local = make_wheel("onlylocal", "1.0")
    (tree / "onlylocal").mkdir(parents=True)
    local.write(tree / "onlylocal")
    upstream.publish(make_wheel("remote", "1.0"))
    index = make_index(
        None,
        **{
            "pypicache.upstreams": f"pypi={upstream.simple_url} local={tree.as_uri()}/",
            "pypicache.follow_method": "auto",
        },
    )
    url = f"{index.simple_url}onlylocal/"
    files = files_of(http, url)
    assert list(files) == [local.filename]
    assert download(http, url, files[local.filename]) == local.content
    assert list(files_of(http, f"{index.url}/u/local/simple/onlylocal/")) == [local.filename]
    assert list(files_of(http, f"{index.simple_url}remote/")) == ["remote-1.0-py3-none-any.whl"]
    # A local tree has nothing to follow: no follower of its own, and no error.
    assert status(index)["upstreams"]["local"]["following"] is False
