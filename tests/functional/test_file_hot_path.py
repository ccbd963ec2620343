"""A stored file of a page this process holds fresh is answered outside Pyramid: the
same answer, header for header, as Pyramid's view gives for the same file."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningIndex
from tests.support.cachestate import wait_cached
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream

JSON = "application/vnd.pypi.simple.v1+json"
# Set by whichever server answered, not by what it answered.
PER_ANSWER = {"Date", "Server", "Connection"}


def answer(method: str, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    response = requests.request(method, url, headers=headers, timeout=30)
    kept = {k: v for k, v in response.headers.items() if k not in PER_ANSWER}
    return response.status_code, kept, response.content


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET", {}),
        ("HEAD", {}),
        ("GET", {"Range": "bytes=10-99"}),
        ("GET", {"Range": "bytes=999999-"}),
    ],
)
@pytest.mark.parametrize("metadata", [False, True])
def test_a_stored_file_is_answered_as_pyramid_answers_it(
    index: RunningIndex, upstream: FakeUpstream, method: str, headers: dict, metadata: bool
):
    wheel = make_wheel("demo-lib", "1.0")
    upstream.publish(wheel)
    page = requests.get(f"{index.simple_url}demo-lib/", headers={"Accept": JSON}, timeout=30)
    assert page.status_code == 200
    suffix = ".metadata" if metadata else ""
    hot = f"{index.url}/packages/demo-lib/{wheel.filename}{suffix}"
    # A name to normalize never takes the hot path: Pyramid's view answers it.
    through_pyramid = f"{index.url}/packages/Demo_Lib/{wheel.filename}{suffix}"
    for stored in (wheel.filename, wheel.filename + ".metadata"):
        assert requests.get(f"{index.url}/packages/demo-lib/{stored}", timeout=30).ok
    wait_cached(index, wheel.filename)

    status, sent, body = answer(method, hot, **headers)
    assert (status, sent, body) == answer(method, through_pyramid, **headers)
    assert sent["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in sent
    if status == 200 and method == "GET":
        assert body == (wheel.metadata if metadata else wheel.content)
    etag = sent.get("ETag")
    if etag:
        assert answer("GET", hot, **{"If-None-Match": etag})[0] == 304


def test_a_file_whose_fill_fails_answers_502_after_as_many_upstream_tries_as_through_pyramid(
    index: RunningIndex, upstream: FakeUpstream
):
    wheels = [make_wheel("demo-lib", "1.0"), make_wheel("demo-lib", "2.0")]
    for wheel in wheels:
        upstream.publish(wheel)
        upstream.fail_next(upstream.file(wheel.filename).path, 500, times=100)
    page = requests.get(f"{index.simple_url}demo-lib/", headers={"Accept": JSON}, timeout=30)
    assert page.status_code == 200
    hot, through_pyramid = (
        f"{index.url}/packages/{name}/{wheel.filename}"
        for name, wheel in zip(("demo-lib", "Demo_Lib"), wheels, strict=True)
    )
    for url in (hot, through_pyramid):
        response = requests.get(url, timeout=30)
        assert response.status_code == 502, response.text
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    tries = [upstream.count(path_contains=wheel.filename) for wheel in wheels]
    assert tries[0] == tries[1] >= 1


@pytest.mark.parametrize(
    "path", ["/packages//x.whl", "/packages/a%20b/x.whl", "/packages/../x.whl"]
)
def test_a_path_that_names_no_project_answers_as_pyramid_does(index: RunningIndex, path: str):
    response = requests.get(index.url + path, timeout=30)
    assert response.status_code in (400, 404)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


segments = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), max_size=20
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(project=segments, filename=segments)
def test_any_file_path_is_answered_without_a_server_error(
    index: RunningIndex, upstream: FakeUpstream, project: str, filename: str
):
    """The hot path reads the path; whatever a client puts there, the answer is one of
    Pyramid's (a page the process holds fresh makes the hot path look further)."""
    wheel = make_wheel("demo-lib", "1.0")
    try:
        upstream.file(wheel.filename)
    except KeyError:
        upstream.publish(wheel)
    requests.get(f"{index.simple_url}demo-lib/", headers={"Accept": JSON}, timeout=30)
    for name in (project, "demo-lib"):
        url = f"{index.url}/packages/{quote(name, safe='')}/{quote(filename, safe='')}"
        response = requests.get(url, timeout=30)
        assert response.status_code < 500, (url, response.text)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
