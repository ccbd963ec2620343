"""An HTTPS upstream: pages and files come through verified against the trust store
requests is given (REQUESTS_CA_BUNDLE), many new connections at once included, and a
certificate that store does not vouch for, or one for another name, is refused."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import trustme

from tests.conftest import IndexFactory
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream

JSON = "application/vnd.pypi.simple.v1+json"
PROJECTS = [f"tls-project-{n}" for n in range(8)]


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def https_upstream(ca: trustme.CA, name: str = "127.0.0.1") -> FakeUpstream:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return FakeUpstream(tls=context)


@pytest.fixture
def trusting(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """REQUESTS_CA_BUNDLE names a bundle of the test's CA alone."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return bundle


@pytest.fixture
def upstream_of(ca: trustme.CA) -> Iterator[FakeUpstream]:
    with https_upstream(ca) as upstream:
        yield upstream


def test_pages_and_files_of_an_https_upstream_come_through_verified(
    make_index: IndexFactory, upstream_of: FakeUpstream, trusting: Path, http
):
    wheels = [upstream_of.publish(make_wheel(project, "1.0")) for project in PROJECTS]
    index = make_index(upstream_of.simple_url)

    def page(project: str) -> requests.Response:
        return http.get(f"{index.simple_url}{project}/", headers={"Accept": JSON}, timeout=30)

    # Eight cold pages at once: eight new TLS connections to the upstream together.
    with ThreadPoolExecutor(len(PROJECTS)) as pool:
        answers = list(pool.map(page, PROJECTS))
    assert [a.status_code for a in answers] == [200] * len(PROJECTS)
    assert [[f["filename"] for f in a.json()["files"]] for a in answers] == [
        [w.filename for w in wheels][i : i + 1] for i in range(len(PROJECTS))
    ]
    url = requests.compat.urljoin(answers[0].url, answers[0].json()["files"][0]["url"])
    download = http.get(url, timeout=30)
    assert download.status_code == 200
    assert download.content == wheels[0].content


def test_an_upstream_certificate_the_trust_store_does_not_vouch_for_is_refused(
    make_index: IndexFactory, trusting: Path, http
):
    with https_upstream(trustme.CA()) as stranger:  # another CA than the bundle's
        stranger.publish(make_wheel(PROJECTS[0], "1.0"))
        index = make_index(stranger.simple_url)
        answer = http.get(f"{index.simple_url}{PROJECTS[0]}/", headers={"Accept": JSON}, timeout=30)
    assert answer.status_code >= 500
    assert "tls_project_0-1.0" not in answer.text


def test_an_upstream_certificate_for_another_name_is_refused(
    make_index: IndexFactory, ca: trustme.CA, trusting: Path, http
):
    with https_upstream(ca, name="upstream.invalid") as misnamed:
        misnamed.publish(make_wheel(PROJECTS[0], "1.0"))
        index = make_index(misnamed.simple_url)
        answer = http.get(f"{index.simple_url}{PROJECTS[0]}/", headers={"Accept": JSON}, timeout=30)
    assert answer.status_code >= 500
