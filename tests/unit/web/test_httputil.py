from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.web.httputil import ByteRange, Unsatisfiable, etag_matches, parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=90-", ByteRange(90, 99)),
        ("bytes=90-500", ByteRange(90, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),  # RFC 9110: longer than the file = the whole file
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=9-3", None),  # invalid: ignored
        ("items=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-160", "bytes=-0"])
def test_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def test_etag_matching_is_weak_for_if_none_match():
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a"', '"a"')
    assert etag_matches('"b", "a"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches('"b"', '"a"')
    assert not etag_matches(None, '"a"')


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=\u0661-\u0662", None),  # Arabic-Indic digits: isdigit() and int() take them
        ("bytes=\uff10-\uff19", None),  # fullwidth digits
        ("bytes=-\u0665", None),
        ("bytes=0-\u00b2", None),  # superscript two: isdigit() says yes, int() refuses it
        ("bytes=+1-5", None),
        ("bytes=1-+5", None),
        ("bytes=1 - 5", None),
        ("bytes= 1-5 ", ByteRange(1, 5)),  # optional whitespace around the range set only
        ("BYTES=1-5", ByteRange(1, 5)),  # the unit is case-insensitive
        ("bytes=", None),
        ("bytes=-", None),
        ("", None),
        ("bytes=0-0," * 5000 + "0-0", None),
        ("bytes=0-" + "9" * 5000, ByteRange(0, 99)),  # more digits than int() converts
        ("bytes=-" + "9" * 5000, ByteRange(0, 99)),
        ("bytes=" + "9" * 5000 + "-" + "9" * 4999, None),  # start > end, both huge
        ("bytes=0005-0010", ByteRange(5, 10)),
    ],
)
def test_parse_range_follows_the_rfc_grammar_only(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=" + "9" * 5000 + "-", "bytes=0-0", "bytes=-0"])
def test_unsatisfiable_huge_or_empty(header):
    size = 0 if header == "bytes=0-0" else 100
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


_RANGE_ALPHABET = st.sampled_from("0123456789-=, \t+bytesBYTES\u0661\uff11\u00b2x")


@given(
    header=st.one_of(
        st.text(),
        st.text(_RANGE_ALPHABET, max_size=40),
        st.builds(lambda spec: "bytes=" + spec, st.text(_RANGE_ALPHABET, max_size=40)),
        st.builds(
            lambda a, b: f"bytes={a}-{b}",
            st.one_of(st.just(""), st.integers(0, 10**30).map(str)),
            st.one_of(st.just(""), st.integers(0, 10**30).map(str)),
        ),
    ),
    size=st.integers(0, 10**12),
)
def test_parse_range_never_fails_and_stays_within_the_file(header, size):
    try:
        byte_range = parse_range(header, size)
    except Unsatisfiable:
        return
    if byte_range is not None:
        assert 0 <= byte_range.start <= byte_range.end < size
        assert byte_range.length >= 1


@given(start=st.integers(0, 10**20), end=st.integers(0, 10**20), size=st.integers(0, 10**15))
def test_parse_range_agrees_with_the_arithmetic(start, end, size):
    header = f"bytes={start}-{end}"
    if end < start:
        assert parse_range(header, size) is None
    elif start >= size:
        with pytest.raises(Unsatisfiable):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == ByteRange(start, min(end, size - 1))
