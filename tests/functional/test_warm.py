"""``pypicache warm``: real pip resolves a requirements file through the index, which fills."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import IndexFactory, RunningIndex
from tests.support.cli import run_pypicache
from tests.support.clients import make_venv, pip_install, uv_pip_install
from tests.support.dists import Dist, make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.trees import EXPECTED, publish_app_tree

LINUX_39 = "cp39-cp39-manylinux_2_17_x86_64"
WINDOWS_312 = "cp312-cp312-win_amd64"


@pytest.fixture
def tree(upstream: FakeUpstream) -> FakeUpstream:
    return publish_app_tree(upstream)


def chosen_wheels() -> set[str]:
    return {make_wheel(name, version).filename for name, version in EXPECTED.items()}


def requirements(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def outcome(stdout: str) -> dict[str, set[str]]:
    """The per-file lines of warm's summary: fetched / already cached / failed -> names."""
    found: dict[str, set[str]] = {"fetched": set(), "already cached": set(), "failed": set()}
    for line in stdout.splitlines():
        match = re.match(r"(fetched|already cached|failed)\s+(\S+?):?(?: |$)", line)
        if match:
            found[match[1]].add(match[2])
    return found


def stored(index: RunningIndex) -> set[str]:
    return {p.name for p in index.settings.blob_dir.rglob("*") if p.is_file()}


def installed(python: Path) -> dict[str, str]:
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    return dict(
        d.name.removesuffix(".dist-info").rsplit("-", 1)  # type: ignore[misc]
        for d in site.glob("*.dist-info")
    )


def test_warm_fills_the_cache_for_installs_without_the_upstream(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    index = make_index(tree.simple_url)

    # The index's own process is not involved: warm serves the same database in-process.
    partial = run_pypicache(index.settings, "warm", "-r", requirements(tmp_path, "libc==0.1"))
    assert partial.returncode == 0, partial.stdout + partial.stderr
    assert outcome(partial.stdout)["fetched"] == {make_wheel("libc", "0.1").filename}

    result = run_pypicache(index.settings, "warm", "-r", requirements(tmp_path, "app"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result.stdout) == {
        "fetched": chosen_wheels() - {make_wheel("libc", "0.1").filename},
        "already cached": {make_wheel("libc", "0.1").filename},
        "failed": set(),
    }
    assert "4 distributions for this Python on this platform: 3 fetched" in result.stdout
    assert "1 already cached, 0 failed" in result.stdout
    # Not a terminal: progress comes as plain lines on stderr.
    assert "warm: resolving app" in result.stderr
    assert "warm: got app-1.0-py3-none-any.whl" in result.stderr
    assert make_sdist("app", "1.0").sha256 not in stored(index), "pip chose the wheel"

    tree.stop()
    for installer in (pip_install, uv_pip_install):
        venv = tmp_path / installer.__name__
        done = installer(make_venv(venv), index.simple_url, "app")
        assert done.returncode == 0, done.stderr
        assert installed(venv / "bin" / "python") == EXPECTED

    # Against the running server this time; everything is there already.
    again = run_pypicache(
        index.settings, "warm", "-r", tmp_path / "requirements.txt", "--index-url", index.simple_url
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert outcome(again.stdout) == {
        "fetched": set(),
        "already cached": chosen_wheels(),
        "failed": set(),
    }
    assert "0 fetched (0 B), 4 already cached, 0 failed" in again.stdout


def native(tag: str) -> Dist:
    return make_wheel("native", "1.0", tag=tag)


def test_warm_for_another_python_and_platform(
    make_index: IndexFactory, upstream: FakeUpstream, tmp_path: Path
):
    for tag in (LINUX_39, WINDOWS_312):
        upstream.publish(native(tag))
    index = make_index(upstream.simple_url)
    reqs = requirements(tmp_path, "native")

    # With read_auth on too: the in-process index lets only its own pip in, without an account.
    linux = run_pypicache(
        index.settings, "warm", "-r", reqs, "--python-version", "3.9",
        "--platform", "manylinux_2_17_x86_64", extra_env={"PYPICACHE_READ_AUTH": "true"},
    )  # fmt: skip
    assert linux.returncode == 0, linux.stdout + linux.stderr
    assert outcome(linux.stdout)["fetched"] == {native(LINUX_39).filename}
    assert "for Python 3.9 on manylinux_2_17_x86_64" in linux.stdout
    assert native(WINDOWS_312).sha256 not in stored(index)

    windows = run_pypicache(
        index.settings, "warm", "-r", reqs, "--python-version", "3.12", "--platform", "win_amd64"
    )
    assert windows.returncode == 0, windows.stdout + windows.stderr
    assert outcome(windows.stdout)["fetched"] == {native(WINDOWS_312).filename}
    assert {native(LINUX_39).sha256, native(WINDOWS_312).sha256} <= stored(index)


def test_warm_reports_what_failed_with_pips_reason(
    make_index: IndexFactory, tree: FakeUpstream, tmp_path: Path
):
    index = make_index(tree.simple_url)
    unknown = run_pypicache(
        index.settings, "warm", "-r", requirements(tmp_path, "app", "no-such-project")
    )
    assert unknown.returncode == 1
    assert outcome(unknown.stdout)["failed"] == {"no-such-project"}
    assert (
        "failed          no-such-project: Could not find a version that satisfies the "
        "requirement no-such-project"
    ) in unknown.stdout
    assert "0 distributions for this Python on this platform" in unknown.stdout
    assert "1 failed" in unknown.stdout

    # The upstream lost a file its page still lists: the index answers 502 and pip gives up.
    libc = make_wheel("libc", "0.1")
    tree.fail_next(tree.file(libc.filename).path, 404, times=100)
    broken = run_pypicache(index.settings, "warm", "-r", requirements(tmp_path, "libc==0.1"))
    assert broken.returncode == 1
    assert outcome(broken.stdout)["failed"] == {libc.filename}, broken.stdout
    assert "502" in broken.stdout
    assert "Traceback" not in broken.stdout


def test_warm_needs_an_existing_requirements_file(make_index: IndexFactory, tmp_path: Path):
    index = make_index(None)
    result = run_pypicache(index.settings, "warm", "-r", tmp_path / "missing.txt")
    assert result.returncode == 1
    assert "missing.txt: no such requirements file" in result.stderr
