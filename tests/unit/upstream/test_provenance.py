"""Provenance from the upstream: the URL an entry gives, and the document it leads to."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pypicache.upstream.entries import checked_provenance
from pypicache.upstream.jsonpage import read_json_page
from pypicache.upstream.pages import parse_page
from pypicache.upstream.provenance import (
    MAX_DOCUMENT_BYTES,
    InvalidProvenance,
    checked_document,
)
from tests.support.attestations import provenance

NAME = "demo-pkg"
BASE = "https://up.example/simple/demo-pkg/"
WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SHA = "a" * 64

# -- the URL -----------------------------------------------------------------------------------

hostile_urls = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "javascript:alert(1)",
            "data:application/json,{}",
            "https://user:pw@up.example/p",
            "https://[::1/p",
            "https://up.example:99999/p",
            "https:///nohost",
            "https://up.example/a b",
            "https://up.example/\u202ep",
            "../../integrity/demo-pkg/1.0/x/provenance",
            "https://up.example/p#frag",
            "x" * 3000,
        ]
    ),
    st.integers(),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)


@given(hostile_urls)
@example(None)
@example("file:///srv/index/demo-pkg/x.provenance")
def test_a_provenance_is_an_absolute_url_of_the_upstreams_kinds_or_refused(value: Any):
    url, why = checked_provenance(value, BASE)
    if value is None:
        assert (url, why) == (None, None)
        return
    assert (url is None) != (why is None)
    if url is not None:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https", "file")
        assert parts.hostname or parts.scheme == "file"
        assert parts.username is None
        assert parts.password is None
        assert "#" not in url
        assert url.isascii()
        assert url.isprintable()
        assert " " not in url


def test_a_relative_provenance_is_read_against_the_page():
    url, why = checked_provenance("../../integrity/demo-pkg/1.0/x/provenance", BASE)
    assert why is None
    assert url == "https://up.example/integrity/demo-pkg/1.0/x/provenance"


def page(entry: dict[str, Any]) -> dict[str, Any]:
    file = {"filename": WHEEL, "url": WHEEL, "hashes": {"sha256": SHA}, **entry}
    return {"meta": {"api-version": "1.3"}, "name": NAME, "files": [file]}


def test_a_json_entry_keeps_its_provenance_url_and_null_means_none():
    url = "https://up.example/integrity/demo-pkg/1.0/x/provenance"
    assert read_json_page(NAME, page({"provenance": url}), BASE).files[0].provenance == url
    assert read_json_page(NAME, page({"provenance": None}), BASE).files[0].provenance is None
    assert read_json_page(NAME, page({}), BASE).files[0].provenance is None


@pytest.mark.parametrize("bad", [7, True, {"url": "x"}, "javascript:alert(1)", "https://a:b@c/"])
def test_a_bad_provenance_leaves_the_file_without_one(bad: object):
    files = read_json_page(NAME, page({"provenance": bad}), BASE).files
    assert [(f.filename, f.provenance) for f in files] == [(WHEEL, None)]


def test_an_html_anchor_gives_its_data_provenance():
    body = (
        '<html><head><meta name="pypi:repository-version" content="1.3"></head><body>'
        f'<a href="/files/{WHEEL}#sha256={SHA}" data-provenance="/integrity/x/provenance">'
        f"{WHEEL}</a>"
        '<a href="/files/demo-pkg-1.0.tar.gz" data-provenance="javascript:x">'
        "demo-pkg-1.0.tar.gz</a>"
        "</body></html>"
    ).encode()
    files = parse_page(NAME, body, "text/html", BASE).files
    assert {f.filename: f.provenance for f in files} == {
        WHEEL: "https://up.example/integrity/x/provenance",
        "demo-pkg-1.0.tar.gz": None,
    }


# -- the document ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)
bundles = st.fixed_dictionaries(
    {
        "publisher": st.fixed_dictionaries(
            {"kind": st.text(max_size=8)}, optional={"claims": json_values}
        ),
        "attestations": st.lists(st.dictionaries(st.text(max_size=5), json_values), min_size=1),
    }
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "version": st.sampled_from([1, 1.0, True, 2, "1"]),
            "attestation_bundles": st.lists(bundles | json_values, max_size=3),
        }
    ),
)


@given(documents)
def test_a_document_is_refused_or_served_canonical_with_the_same_content(document: object):
    body = json.dumps(document).encode()
    try:
        served = checked_document(body)
    except InvalidProvenance:
        return
    data = json.loads(served)
    assert data == document
    assert data["version"] == 1
    assert type(data["version"]) is int
    assert all(isinstance(b["publisher"]["kind"], str) for b in data["attestation_bundles"])
    assert served == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@given(st.binary(max_size=64))
@example(b'{"version": 1, "attestation_bundles": NaN}')
@example(b"[" * 100_000)
def test_bytes_that_are_no_document_are_refused_as_such(body: bytes):
    with pytest.raises(InvalidProvenance):
        checked_document(body)


def test_pypis_document_is_served_as_it_says():
    document = provenance(WHEEL, SHA)
    assert json.loads(checked_document(json.dumps(document).encode())) == document


def test_a_document_too_big_is_refused():
    document = provenance(WHEEL, SHA)
    document["attestation_bundles"][0]["publisher"]["padding"] = "x" * MAX_DOCUMENT_BYTES
    with pytest.raises(InvalidProvenance, match="larger"):
        checked_document(json.dumps(document).encode())
