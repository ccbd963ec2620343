from __future__ import annotations

import json
from datetime import datetime

from pypicache.rendering import FileRecord, PageData, render


def record(filename: str, **changes) -> FileRecord:
    values = {
        "project": "pkg",
        "filename": filename,
        "version": "1.0",
        "sha256": "a" * 64,
        "size": 10,
        "requires_python": None,
        "yanked": False,
        "yanked_reason": None,
        "upload_time": datetime(2024, 1, 2, 3, 4, 5),
        "has_metadata": False,
        "metadata_sha256": None,
        "upstream_url": None,
    }
    values.update(changes)
    return FileRecord(**values)


def test_rendering_is_deterministic_whatever_the_order_of_files():
    files = [record("pkg-1.0.tar.gz"), record("pkg-1.0-py3-none-any.whl")]
    one = render(PageData("pkg", "Pkg", 7, ["1.0"], files))
    other = render(PageData("pkg", "Pkg", 7, ["1.0"], list(reversed(files))))
    assert one.html == other.html
    assert one.json == other.json


def test_filenames_are_percent_encoded_in_urls_and_escaped_in_text():
    page = render(PageData("pkg", "Pkg", None, ["1.0+local"], [record("pkg-1.0+local.tar.gz")]))
    assert b'href="../../packages/pkg/pkg-1.0%2Blocal.tar.gz#sha256=' in page.html.body
    assert b">pkg-1.0+local.tar.gz</a>" in page.html.body
    assert b"<!--SERIAL" not in page.html.body


def test_unknown_size_claims_api_1_0_and_omits_size():
    page = render(PageData("pkg", "Pkg", 3, [], [record("pkg-1.0.tar.gz", size=None)]))
    data = json.loads(page.json.body)
    assert data["meta"] == {"api-version": "1.0", "_last-serial": 3}
    assert "size" not in data["files"][0]
    assert data["versions"] == []


def test_upload_time_keeps_microseconds_only_when_present():
    page = render(
        PageData(
            "pkg",
            "Pkg",
            None,
            ["1.0"],
            [
                record("a.tar.gz", upload_time=datetime(2024, 1, 2, 3, 4, 5, 6)),
                record("b.tar.gz", upload_time=None),
            ],
        )
    )
    files = json.loads(page.json.body)["files"]
    assert files[0]["upload-time"] == "2024-01-02T03:04:05.000006Z"
    assert "upload-time" not in files[1]


def test_versions_sort_by_version_then_text():
    page = render(PageData("pkg", "Pkg", None, ["10.0", "2.0", "1.0.0", "1.0", "weird"], []))
    assert json.loads(page.json.body)["versions"] == ["1.0", "1.0.0", "2.0", "10.0", "weird"]
