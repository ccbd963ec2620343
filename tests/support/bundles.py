"""A sample bundle manifest with every field set, for the manifest and digest tests."""

from __future__ import annotations

from datetime import datetime

from pypicache.ops.bundle import BundleFile, BundleProject, Manifest

WHEEL_SHA = "a" * 64
METADATA_SHA = "b" * 64


def sample() -> Manifest:
    """A manifest with every field set, so a field lost on the way shows."""
    wheel = BundleFile(
        filename="demo_pkg-1.0-py3-none-any.whl",
        version="1.0",
        sha256=WHEEL_SHA,
        size=1234,
        requires_python=">=3.9",
        yanked=True,
        yanked_reason="broken",
        upload_time=datetime(2024, 1, 2, 3, 4, 5, 678),
        has_metadata=True,
        metadata_sha256=METADATA_SHA,
        metadata_size=56,
        origin="upstream",
        upstream_url="http://127.0.0.1:1/packages/demo_pkg-1.0-py3-none-any.whl",
        provenance="http://127.0.0.1:1/integrity/demo-pkg/1.0/demo_pkg-1.0-py3-none-any.whl",
    )
    sdist = BundleFile(
        filename="demo_pkg-1.0.tar.gz",
        version="1.0",
        sha256="c" * 64,
        size=99,
        requires_python=None,
        yanked=False,
        yanked_reason=None,
        upload_time=None,
        has_metadata=False,
        metadata_sha256=None,
        metadata_size=None,
        origin="private",
        upstream_url=None,
        provenance=None,
    )
    project = BundleProject(
        name="demo-pkg",
        display_name="Demo.Pkg",
        last_serial=42,
        versions=("0.9", "1.0"),
        status=None,
        status_reason=None,
        private=False,
        merge_upstream=False,
        files=(wheel, sdist),
    )
    return Manifest("http://127.0.0.1:1/simple/", datetime(2024, 5, 6, 7, 8, 9), (project,))
