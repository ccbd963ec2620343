"""A hostile upstream's digests and names never name a path: such entries are left out.

Before the fix a page hash of ``/etc/passwd`` served that file as a cache hit, and the same
value as a core-metadata hash made retention delete the file it named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pypicache.upstream.client import UpstreamClient
from tests.conftest import IndexFactory, RunningIndex
from tests.support.cachestate import blob_path, download
from tests.support.clients import make_venv, pip_install
from tests.support.dists import Dist, make_wheel
from tests.support.hostile import JSON_TYPE, Answer, HostileUpstream
from tests.support.waiting import wait_until

SECRET = b"SENTINEL: a file outside the store that no upstream may read or delete\n"
HTML_ACCEPT = "text/html"


@pytest.fixture
def hostile() -> HostileUpstream:
    with HostileUpstream() as upstream:
        yield upstream


@pytest.fixture
def sentinels(tmp_path: Path) -> tuple[Path, Path]:
    """Two files outside every store: one a page names as a hash, one as a metadata hash."""
    outside = tmp_path / "outside"
    outside.mkdir()
    served, deleted = outside / "served-secret", outside / "deleted-secret"
    served.write_bytes(SECRET)
    deleted.write_bytes(SECRET)
    return served, deleted


def serve(upstream: HostileUpstream, dist: Dist) -> str:
    """Serve ``dist``'s bytes; its URL."""
    path = f"/files/{dist.filename}"
    upstream.set(
        path, Answer(headers={"Content-Type": "application/octet-stream"}, body=dist.content)
    )
    return upstream.url + path


def entry(upstream: HostileUpstream, dist: Dist, sha256: str, **extra: object) -> dict:
    return {
        "filename": dist.filename,
        "url": serve(upstream, dist),
        "hashes": {"sha256": sha256},
        **extra,
    }


def invalid_entries(index: RunningIndex, reason: str) -> float:
    text = requests.get(index.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pypicache_upstream_invalid_entries_total" and sample.labels == {
                "reason": reason
            }:
                return sample.value
    return 0.0


def listed(index: RunningIndex, project: str) -> tuple[list[str], str]:
    """The file names of the project's JSON page, and its HTML page."""
    url = f"{index.simple_url}{project}/"
    page = requests.get(url, headers={"Accept": JSON_TYPE}, timeout=10)
    assert page.status_code == 200, page.text
    html = requests.get(url, headers={"Accept": HTML_ACCEPT}, timeout=10)
    assert html.status_code == 200, html.text
    return [f["filename"] for f in page.json()["files"]], html.text


def assert_not_served(index: RunningIndex, project: str, filename: str) -> None:
    for suffix in ("", ".metadata"):
        response = requests.get(f"{index.url}/packages/{project}/{filename}{suffix}", timeout=10)
        assert response.status_code == 404, (filename, response.status_code)
        assert SECRET not in response.content
        assert b"root:" not in response.content


def test_path_like_and_malformed_hashes_leave_the_entry_out_and_name_no_file(
    make_index: IndexFactory, hostile: HostileUpstream, sentinels, tmp_path: Path
):
    served, deleted = sentinels
    good = make_wheel("hostile", "1.0")
    bad = {
        "absolute": (make_wheel("hostile", "2.0"), str(served)),
        "traversal": (make_wheel("hostile", "2.1"), "../../../etc/passwd"),
        "short traversal": (make_wheel("hostile", "2.2"), "../../x"),
        "upper case": (make_wheel("hostile", "2.3"), make_wheel("hostile", "2.3").sha256.upper()),
        "63 chars": (make_wheel("hostile", "2.4"), make_wheel("hostile", "2.4").sha256[:63]),
        "65 chars": (make_wheel("hostile", "2.5"), make_wheel("hostile", "2.5").sha256 + "0"),
        "newline": (make_wheel("hostile", "2.6"), make_wheel("hostile", "2.6").sha256 + "\n"),
        "markup": (make_wheel("hostile", "2.7"), '"><script>alert(1)</script>'),
    }
    # A real file with its real hash, whose core-metadata hash names a file to delete.
    metadata_attack = make_wheel("hostile", "3.0")
    files = [entry(hostile, good, good.sha256)]
    files += [entry(hostile, dist, sha256) for dist, sha256 in bad.values()]
    files.append(
        entry(
            hostile,
            metadata_attack,
            metadata_attack.sha256,
            **{"core-metadata": {"sha256": str(deleted)}},
        )
    )
    hostile.json_page("hostile", files)
    index = make_index(
        hostile.simple_url, **{"pypicache.cache_max_bytes": "1", "pypicache.gc_interval": "3600"}
    )

    names, html = listed(index, "hostile")
    assert names == [good.filename]
    assert good.filename in html
    for dist, _ in [*bad.values(), (metadata_attack, None)]:
        assert dist.filename not in html
        assert_not_served(index, "hostile", dist.filename)
        assert hostile.count(f"/files/{dist.filename}") == 0
    assert invalid_entries(index, "digest") >= len(bad) + 1

    # The valid entry on the same page is served and installs.
    assert download(index, good) == good.content
    result = pip_install(make_venv(tmp_path / "venv"), index.simple_url, "hostile==1.0")
    assert result.returncode == 0, result.stderr

    # Retention (woken by the fill over the limit) evicts the one cached file and
    # touches nothing outside the store.
    assert wait_until(lambda: not blob_path(index.settings, good.sha256).exists(), timeout=5)
    assert served.read_bytes() == SECRET
    assert deleted.read_bytes() == SECRET


def test_html_fragments_and_core_metadata_attributes_are_checked_too(
    make_index: IndexFactory, hostile: HostileUpstream, sentinels
):
    served, _ = sentinels
    good = make_wheel("hostile-html", "1.0")
    absolute, upper, metadata_upper = (make_wheel("hostile-html", v) for v in ("2.0", "2.1", "2.2"))
    links = [
        f'<a href="{serve(hostile, good)}#sha256={good.sha256}">{good.filename}</a>',
        f'<a href="{serve(hostile, absolute)}#sha256={served}">{absolute.filename}</a>',
        f'<a href="{serve(hostile, upper)}#sha256={upper.sha256.upper()}">{upper.filename}</a>',
        f'<a href="{serve(hostile, metadata_upper)}#sha256={metadata_upper.sha256}" '
        f'data-core-metadata="sha256={"AB" * 32}">{metadata_upper.filename}</a>',
    ]
    hostile.html_page("hostile-html", "<html><body>" + "\n".join(links) + "</body></html>")
    index = make_index(hostile.simple_url)

    names, html = listed(index, "hostile-html")
    assert names == [good.filename]
    for dist in (absolute, upper, metadata_upper):
        assert dist.filename not in html
        assert_not_served(index, "hostile-html", dist.filename)
    assert invalid_entries(index, "digest") >= 3
    assert download(index, good) == good.content


def test_file_names_that_are_paths_or_of_another_project_are_left_out(
    make_index: IndexFactory, hostile: HostileUpstream
):
    good = make_wheel("named", "1.0")
    other = make_wheel("other", "1.0")
    files = [entry(hostile, good, good.sha256)]
    for filename in (
        "../../named-2.0-py3-none-any.whl",
        "..\\named-2.0-py3-none-any.whl",
        "named-2.0-py3-none-any.whl\x00.txt",
        "named-2.0\x1b[31m-py3-none-any.whl",
        "",
        other.filename,  # another project's file on this page
        "named-2.0.exe",
    ):
        files.append({**entry(hostile, good, good.sha256), "filename": filename})
    hostile.json_page("named", files)
    index = make_index(hostile.simple_url)

    names, _ = listed(index, "named")
    assert names == [good.filename]
    assert_not_served(index, "named", other.filename)
    assert invalid_entries(index, "filename") >= 7


def test_the_upstream_project_list_keeps_only_valid_names(
    make_index: IndexFactory, hostile: HostileUpstream
):
    bad = ["../etc", "bad name", "-leading", "trailing.", "a/b", "x" * 300]
    anchors = [f'<a href="/simple/{n}/">{n}</a>' for n in ["Good.Name", *bad]]
    hostile.set(
        "/simple/",
        Answer(headers={"Content-Type": "text/html"}, body="\n".join(anchors).encode()),
    )
    index = make_index(hostile.simple_url)

    listing = requests.get(index.simple_url, headers={"Accept": JSON_TYPE}, timeout=10)
    assert listing.status_code == 200, listing.text
    assert [p["name"] for p in listing.json()["projects"]] == ["Good.Name"]
    html = requests.get(index.simple_url, headers={"Accept": HTML_ACCEPT}, timeout=10).text
    assert "Good.Name" in html
    for name in bad:
        assert name not in html
    assert invalid_entries(index, "name") >= len(bad)


def test_the_upstream_serial_list_keeps_only_valid_names(hostile: HostileUpstream):
    projects = [
        {"name": "Good_Name", "_last-serial": 5},
        {"name": "../etc", "_last-serial": 6},
        {"name": 7, "_last-serial": 7},
        {"name": "with space", "_last-serial": 8},
    ]
    body = json.dumps({"meta": {"api-version": "1.1", "_last-serial": 9}, "projects": projects})
    hostile.set("/simple/", Answer(headers={"Content-Type": JSON_TYPE}, body=body.encode()))
    client = UpstreamClient(hostile.simple_url, connect_timeout=2, read_timeout=5, retries=0)
    try:
        serials = client.project_serials()
        assert list(serials) == [("good-name", 5)]
        assert serials.serial == 9
    finally:
        client.close()


def test_text_no_database_can_hold_is_cleaned_not_a_500(make_index: IndexFactory, hostile):
    dist = make_wheel("surrogate", "1.0")
    bad = {"yanked": "\ud800 pulled", "requires-python": ">=3\udfff"}
    hostile.json_page(
        "surrogate", [entry(hostile, dist, dist.sha256, **bad)], meta={"_last-serial": 3}
    )
    index = make_index(hostile.simple_url)
    for _ in range(2):  # the miss that stores it, and the hit that reads it back
        response = requests.get(
            index.simple_url + "surrogate/", headers={"Accept": JSON_TYPE}, timeout=10
        )
        assert response.status_code == 200
        (listed,) = response.json()["files"]
        assert listed["yanked"] == "\ufffd pulled"
        assert listed["requires-python"] == ">=3\ufffd"
