from __future__ import annotations

import pytest

from pypicache.negotiation import select_media_type

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("", "text/html"),
        ("*/*", "text/html"),
        (f"{JSON}, {HTML}; q=0.1, text/html; q=0.01", JSON),
        (f"{HTML};q=0.2, {JSON}, text/html;q=0.01", JSON),
        (f"{JSON}, {HTML}, text/html;q=0.01", JSON),
        (f"{JSON};q=0.5, {HTML};q=0.9", HTML),
        ("application/*", JSON),
        ("text/*", "text/html"),
        ("TEXT/HTML", "text/html"),
        (f"{JSON};q=0.001, text/html;q=0.0009", JSON),
        ("application/vnd.pypi.simple.latest+json", JSON),
        (f"{JSON};q=0", None),
        ("application/json", None),
        ("*/*;q=0", None),
        ("*/*, text/html;q=0", JSON),
        ("garbage", "text/html"),
        (f"{JSON};q=abc, text/html;q=0.5", "text/html"),
    ],
)
def test_selection(accept, expected):
    assert select_media_type(accept) == expected
