"""Run real installers (pip, uv) against a test index, isolated from the machine's config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import requests

_LOOPBACK = "127.0.0.1,localhost,::1"


def clean_client_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which pip and uv see only the index a test names.

    This machine's pip config and PIP_* variables add extra indexes, find-links and
    constraints; any of them would let an install succeed without our index, or pull in files
    the test never published. Every PIP_* / UV_* variable is dropped and config files are
    switched off; loopback is exempted from any proxy.
    """
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.upper().startswith(("PIP_", "UV_"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no config file at all when it is devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["UV_NO_CONFIG"] = "1"
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key, ""), _LOOPBACK]))
    return env


def find_uv() -> str:
    """The uv binary: on PATH, or installed next to the running interpreter (the venv)."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        raise FileNotFoundError("uv is not installed (pip install uv)")
    return found


def make_venv(path: Path) -> Path:
    """Create an empty virtual environment and return its interpreter.

    It is made without pip: the pip under test runs from this interpreter with `--python`,
    which is faster and tests the pip version the project pins rather than the bundled one.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        env=clean_client_env(),
    )
    return path / "bin" / "python"


def pip_install(
    python: Path, index_url: str, *requirements: str, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`pip install` into the environment of `python`, from `index_url` only, no cache."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-cache-dir",
            "--index-url",
            index_url,
            *extra,
            *requirements,
        ],
        capture_output=True,
        text=True,
        env=clean_client_env(),
        timeout=300,
    )


def uv_pip_install(
    python: Path, index_url: str, *requirements: str, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`uv pip install` into the environment of `python`, from `index_url` only, no cache."""
    return subprocess.run(
        [
            find_uv(),
            "pip",
            "install",
            "--python",
            str(python),
            "--no-cache",
            "--index-url",
            index_url,
            *extra,
            *requirements,
        ],
        capture_output=True,
        text=True,
        env=clean_client_env(),
        timeout=300,
    )


def installed(python: Path) -> dict[str, str]:
    """What a venv's interpreter has installed, name to version, read from its dist-infos."""
    site = next((python.parent.parent / "lib").glob("python*/site-packages"))
    found = {}
    for dist_info in site.glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
        found[name] = version
    return found


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """One HTTP session for a test, closed after it."""
    with requests.Session() as session:
        yield session
