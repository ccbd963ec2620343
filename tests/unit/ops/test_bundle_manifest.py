"""The bundle manifest: what export writes, import reads back exactly, and what it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pypicache.errors import BundleError
from pypicache.ops.bundle import Manifest
from tests.support.bundles import METADATA_SHA, WHEEL_SHA, sample


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
        (lambda d: first_file(d).update({"provenance": "javascript:x"}), "provenance: a prov"),
        (lambda d: first_file(d).update({"provenance": 7}), "provenance: expected str"),
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


def test_a_manifest_carries_an_upstream_files_provenance_url_and_no_uploaded_one():
    data = json.loads(sample().to_json())
    assert first_file(data)["provenance"].endswith("/integrity/demo-pkg/1.0/" + WHEEL)
    data["projects"][0]["files"][1]["provenance"] = "uploaded"  # a private file's
    files = Manifest.from_json(json.dumps(data).encode()).projects[0].files
    assert [f.provenance for f in files] == [first_file(data)["provenance"], None]


WHEEL = "demo_pkg-1.0-py3-none-any.whl"
