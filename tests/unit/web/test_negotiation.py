from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.web.negotiation import accepts_gzip, select_media_type

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


@pytest.mark.parametrize(
    "accept",
    [
        f"{JSON};q=nan, {HTML};q=0.5",
        f"{JSON};q=\u0661, {HTML};q=0.5",  # an Arabic-Indic 1: float() reads it, RFC 9110 not
        f"{JSON};q=1e9, {HTML};q=0.5",
        f"{JSON};q=+1, {HTML};q=0.5",
        f"{JSON};q=1_0, {HTML};q=0.5",
    ],
)
def test_a_malformed_qvalue_means_not_acceptable(accept):
    assert select_media_type(accept) == HTML


@given(st.text())
def test_any_accept_header_gets_an_answer_or_406(accept):
    assert select_media_type(accept) in (JSON, HTML, "text/html", None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([JSON, HTML, "text/html", "*/*", "text/*", "application/*", "x"]),
            st.text(st.sampled_from("q=0.1;, \u0661\uff11e+-nan"), max_size=12),
        ),
        max_size=8,
    )
)
def test_accept_lists_with_odd_parameters(items):
    accept = ", ".join(f"{media};{params}" for media, params in items)
    assert select_media_type(accept) in (JSON, HTML, "text/html", None)


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate", True),  # requests, and so pip
        ("gzip, deflate, br, zstd", True),  # uv
        ("x-gzip", True),
        ("GZIP;Q=0.5", True),
        ("identity", False),
        ("br", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),  # named wins over the wildcard
        ("gzip;q=0.001", True),
        ("gzip;q=nan", False),
        ("gzip;q=1e9", False),
        ("deflate, *;q=0.5", True),
    ],
)
def test_accept_encoding_takes_gzip(accept_encoding, expected):
    assert accepts_gzip(accept_encoding) is expected


@given(st.text())
def test_any_accept_encoding_header_gets_an_answer(header):
    assert accepts_gzip(header) in (True, False)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["*", "br", "deflate", "identity", ""]),
            st.text(st.sampled_from("q=0.1;, \u0661e+-nan"), max_size=10),
        ),
        max_size=6,
    )
)
def test_gzip_refused_by_name_is_never_sent_whatever_else_is_accepted(items):
    header = ", ".join(f"{coding};{params}" for coding, params in items) + ", gzip;q=0"
    assert accepts_gzip(header) is False
