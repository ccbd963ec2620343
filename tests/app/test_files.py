"""File downloads in process: a miss fills from the upstream, a hit does not; byte ranges."""

from __future__ import annotations

import pytest

from tests.support.dists import make_sdist

pytestmark = pytest.mark.usefixtures("sdist")


@pytest.fixture
def sdist(upstream):
    dist = make_sdist("Demo.Pkg", "1.0")
    upstream.publish(dist)
    return dist


def url(sdist) -> str:
    return f"/packages/demo-pkg/{sdist.filename}"


def test_a_miss_fetches_from_the_upstream_once_then_hits(testapp, upstream, sdist):
    testapp.get("/simple/demo-pkg/")
    miss = testapp.get(url(sdist))
    assert miss.status_int == 200
    assert miss.body == sdist.content
    assert miss.headers["Content-Length"] == str(sdist.size)
    assert miss.headers["ETag"] == f'"sha256:{sdist.sha256}"'
    fetched = upstream.count(path_contains=sdist.filename)
    assert fetched >= 1

    hit = testapp.get(url(sdist))
    assert hit.body == sdist.content
    assert upstream.count(path_contains=sdist.filename) == fetched


def test_a_range_is_206_and_a_range_beyond_the_end_is_416(testapp, sdist):
    testapp.get("/simple/demo-pkg/")
    part = testapp.get(url(sdist), headers={"Range": "bytes=10-19"}, status=206)
    assert part.body == sdist.content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{sdist.size}"

    beyond = testapp.get(url(sdist), headers={"Range": f"bytes={sdist.size}-"}, status=416)
    assert beyond.headers["Content-Range"] == f"bytes */{sdist.size}"


def test_an_unknown_file_is_404(testapp):
    testapp.get("/simple/demo-pkg/")
    testapp.get("/packages/demo-pkg/demo_pkg-9.9.tar.gz", status=404)
