"""The simple API in process: PEP 691 negotiation and validators on a project page."""

from __future__ import annotations

import pytest

from tests.support.dists import make_wheel

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"


@pytest.fixture
def demo(upstream):
    upstream.publish(make_wheel("Demo.Pkg", "1.0"))
    return upstream


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("text/html", "text/html"), (V1_HTML, V1_HTML), (JSON, JSON), ("*/*", "text/html")],
)
def test_project_page_speaks_the_format_asked_for(testapp, demo, accept, expected):
    response = testapp.get("/simple/demo-pkg/", headers={"Accept": accept})
    assert response.status == "200 OK"
    assert response.content_type == expected
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert "demo_pkg-1.0-py3-none-any.whl" in response.text


def test_json_page_lists_files_and_versions(testapp, demo):
    body = testapp.get("/simple/demo-pkg/", headers={"Accept": JSON}).json
    assert body["name"] == "demo-pkg"
    assert body["versions"] == ["1.0"]
    assert [f["filename"] for f in body["files"]] == ["demo_pkg-1.0-py3-none-any.whl"]


def test_an_unsupported_accept_is_406(testapp, demo):
    headers = {"Accept": "application/xml"}
    assert testapp.get("/simple/demo-pkg/", headers=headers, status=406).status_int == 406
    assert testapp.get("/simple/", headers=headers, status=406).status_int == 406


# The 304 repeats the page's Content-Type (as it always has); WebTest's lint frowns on that.
@pytest.mark.filterwarnings("ignore:Content-Type header found in a 304")
def test_project_page_has_a_strong_etag_and_answers_304(testapp, demo):
    first = testapp.get("/simple/demo-pkg/", headers={"Accept": JSON})
    etag = first.headers["ETag"]
    assert etag.startswith('"')
    again = testapp.get(
        "/simple/demo-pkg/", headers={"Accept": JSON, "If-None-Match": etag}, status=304
    )
    assert again.body == b""
    assert again.headers["ETag"] == etag
    html = testapp.get("/simple/demo-pkg/", headers={"Accept": "text/html", "If-None-Match": etag})
    assert html.status_int == 200, "the HTML page has its own validator"
