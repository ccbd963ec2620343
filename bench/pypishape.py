"""Projects shaped like PyPI's biggest: hundreds of releases, dozens of wheels each.

Generated, never downloaded: every file is a real, installable wheel or sdist (tiny), with
core metadata the size of a real one (a README as its body), platform tags of the CPython
versions and platforms a compiled project builds for, ``Requires-Python`` that moves with
the years, and upload times spread over a decade.  The same sizes always give the same bytes.

The four shapes mirror the page sizes the cold-page targets are about: a pure-Python
project (pip, about 300 files), one with a long history (setuptools, about 1,500) and two
compiled ones (numpy, about 5,000; grpcio, about 11,000).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tests.support.dists import Dist, make_sdist, make_wheel

# Files per project: the keys name the projects (``shape-300`` ...).
SIZES = (300, 1_500, 5_000, 11_000)
FIRST_UPLOAD = datetime(2014, 1, 6, 9, 30, tzinfo=UTC)
LAST_UPLOAD = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)

_PLATFORMS = (
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "manylinux_2_17_i686.manylinux2014_i686",
    "manylinux_2_17_ppc64le.manylinux2014_ppc64le",
    "manylinux_2_17_s390x.manylinux2014_s390x",
    "musllinux_1_1_x86_64",
    "musllinux_1_1_aarch64",
    "macosx_10_9_x86_64",
    "macosx_11_0_arm64",
    "macosx_10_9_universal2",
    "win32",
    "win_amd64",
)
_PYTHONS = ("cp37", "cp38", "cp39", "cp310", "cp311", "cp312", "cp313")
_DEPENDENCIES = ("typing-extensions>=4.6", "packaging>=23", 'tomli>=2; python_version < "3.11"')


def project_name(files: int) -> str:
    return f"shape-{files}"


@dataclass(frozen=True)
class Upload:
    """One file of a generated project and when it was uploaded."""

    dist: Dist
    upload_time: datetime


def _readme(name: str, rng: random.Random) -> str:
    """A README-sized METADATA body (real ones run from 2 to 30 KB)."""
    words = ("index", "cache", "wheel", "build", "release", "platform", "install", "python")
    paragraphs = [
        " ".join(rng.choice(words) for _ in range(90)).capitalize() + "." for _ in range(8)
    ]
    return f"# {name}\n\n" + "\n\n".join(paragraphs) + "\n"


def _wheel_tags(per_release: int) -> list[str]:
    """``per_release`` wheel tags, newest CPython first, the way compiled projects fan out."""
    if per_release <= 1:
        return ["py3-none-any"]
    tags = [f"{py}-{py}-{platform}" for py in reversed(_PYTHONS) for platform in _PLATFORMS]
    return tags[:per_release]


def _versions(count: int) -> Iterator[str]:
    """``count`` versions, oldest first: minors with patches, now and then a pre-release."""
    major, minor, patch = 1, 0, 0
    for n in range(count):
        if n % 17 == 16:
            yield f"{major}.{minor + 1}.0rc1"
            continue
        yield f"{major}.{minor}.{patch}"
        patch += 1
        if patch == 4:
            minor, patch = minor + 1, 0
        if minor == 30:
            major, minor = major + 1, 0


def generate(files: int, *, seed: int = 0) -> list[Upload]:
    """About ``files`` uploads (never fewer) for the project ``project_name(files)``."""
    name = project_name(files)
    rng = random.Random(f"{seed}-{files}")  # generated data, not secrets
    per_release = 1 if files <= 300 else 2 if files <= 1_500 else 24 if files <= 5_000 else 40
    releases = -(-files // (per_release + 1))
    span = (LAST_UPLOAD - FIRST_UPLOAD) / releases
    readme = _readme(name, rng)
    uploads: list[Upload] = []
    for index, version in enumerate(_versions(releases)):
        when = FIRST_UPLOAD + span * index
        requires_python = ">=3.7" if when.year < 2022 else ">=3.9"
        common = {
            "requires_dist": _DEPENDENCIES,
            "requires_python": requires_python,
            "description": readme,
        }
        uploads.append(Upload(make_sdist(name, version, **common), when))
        for offset, tag in enumerate(_wheel_tags(per_release)):
            uploaded = when + timedelta(minutes=3 + offset)
            uploads.append(Upload(make_wheel(name, version, tag=tag, **common), uploaded))
    return uploads
