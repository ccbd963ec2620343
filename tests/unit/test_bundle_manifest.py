"""The bundle manifest: what export writes, import reads back exactly, and what it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from pypicache.errors import BundleError
from pypicache.ops.bundle import BundleFile, BundleProject, Manifest

WHEEL_SHA = "a" * 64
METADATA_SHA = "b" * 64


def sample() -> Manifest:
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


def test_a_manifest_reads_back_exactly():
    assert Manifest.from_json(sample().to_json()) == sample()
    assert sample().blobs() == {
        WHEEL_SHA: (1234, "demo_pkg-1.0-py3-none-any.whl"),
        METADATA_SHA: (56, "demo_pkg-1.0-py3-none-any.whl.metadata"),
        "c" * 64: (99, "demo_pkg-1.0.tar.gz"),
    }


def first_file(data: dict[str, Any]) -> dict[str, Any]:
    return data["projects"][0]["files"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update({"format": "something-else"}), "not a pypicache-bundle"),
        (lambda d: d.update({"format-version": 2}), "newer than this pypicache understands"),
        (lambda d: d["projects"][0].update({"name": "Demo_Pkg"}), "not a normalized project"),
        (lambda d: d["projects"].append(d["projects"][0]), "a project is listed twice"),
        (lambda d: first_file(d).update({"filename": "../../etc/x.whl"}), "not a file name"),
        (lambda d: first_file(d).update({"sha256": "abc"}), "not a sha256 hex digest"),
        (lambda d: first_file(d).update({"size": True}), "size: expected int"),
        (lambda d: first_file(d).update({"size": -1}), "must not be negative"),
        (lambda d: first_file(d).update({"metadata-sha256": None}), "has-metadata needs"),
        (lambda d: first_file(d).update({"origin": "elsewhere"}), "origin: expected one of"),
        (lambda d: first_file(d).update({"upload-time": "yesterday"}), "not an ISO 8601 time"),
        (lambda d: d["projects"][0]["files"][1].update({"sha256": WHEEL_SHA}), "two sizes"),
    ],
)
def test_a_bad_manifest_is_refused_naming_what_is_wrong(
    change: Callable[[dict[str, Any]], None], message: str
):
    data = json.loads(sample().to_json())
    change(data)
    with pytest.raises(BundleError, match=message):
        Manifest.from_json(json.dumps(data).encode())


def test_not_json_at_all():
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.from_json(b"\x00garbage")
