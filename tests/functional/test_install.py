"""Real pip and uv install a small dependency tree through pypicache, then without the upstream."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import RunningIndex
from tests.support.clients import installed, make_venv, pip_install, uv_pip_install
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.trees import EXPECTED, publish_app_tree


@pytest.fixture
def tree(upstream: FakeUpstream) -> FakeUpstream:
    return publish_app_tree(upstream)


def upstream_fetches(upstream: FakeUpstream) -> Counter[str]:
    return Counter(r.path.split("?")[0] for r in upstream.requests if r.method == "GET")


@pytest.mark.parametrize("installer", [pip_install, uv_pip_install], ids=["pip", "uv"])
def test_install_cold_then_with_the_upstream_stopped(
    index: RunningIndex, tree: FakeUpstream, tmp_path: Path, installer
):
    cold = installer(make_venv(tmp_path / "cold"), index.simple_url, "app")
    assert cold.returncode == 0, cold.stderr
    assert installed(tmp_path / "cold" / "bin" / "python") == EXPECTED

    fetches = upstream_fetches(tree)
    assert fetches, "the cold install went through the upstream"
    assert max(fetches.values()) == 1, f"something was fetched twice: {fetches}"
    assert not [path for path in fetches if path.endswith(".tar.gz")], "no sdist needed"

    tree.stop()
    warm = installer(make_venv(tmp_path / "warm"), index.simple_url, "app")
    assert warm.returncode == 0, warm.stderr
    assert installed(tmp_path / "warm" / "bin" / "python") == EXPECTED


def test_pip_refuses_a_file_whose_hash_the_page_does_not_match(
    index: RunningIndex, tree: FakeUpstream, tmp_path: Path
):
    wheel = make_wheel("libc", "0.1")
    tree.wrong_bytes(wheel.filename)
    result = pip_install(
        make_venv(tmp_path / "venv"),
        index.simple_url,
        "libc==0.1",
        extra=["--resume-retries", "0", "--retries", "0"],
    )
    assert result.returncode != 0
    stored = {p.name for p in index.settings.blob_dir.rglob("*") if p.is_file()}
    assert stored == {wheel.metadata_sha256}, "the metadata is fine; the wheel is not stored"


def test_uv_installs_a_pinned_yanked_version_and_pip_skips_yanked(
    index: RunningIndex, tree: FakeUpstream, tmp_path: Path
):
    result = pip_install(make_venv(tmp_path / "pip"), index.simple_url, "libc")
    assert result.returncode == 0, result.stderr
    assert installed(tmp_path / "pip" / "bin" / "python") == {"libc": "0.1"}
    result = uv_pip_install(make_venv(tmp_path / "uv"), index.simple_url, "libc==0.2")
    assert result.returncode == 0, result.stderr
    assert installed(tmp_path / "uv" / "bin" / "python") == {"libc": "0.2"}
