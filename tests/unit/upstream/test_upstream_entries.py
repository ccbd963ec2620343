"""Property tests of what an upstream entry may name: digests, file names, project names."""

from __future__ import annotations

import re
import string
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from pypi_simple import DistributionPackage, ProjectPage

from pypicache.digests import checked_sha256, is_sha256
from pypicache.errors import InvalidDigest
from pypicache.storage.local import LocalBlobStore
from pypicache.upstream.entries import (
    SERIAL_LIMIT,
    TEXT_LIMIT,
    checked_page,
    checked_serial,
    filename_problem,
    parse_serial,
    upstream_text,
    valid_project_name,
)

HEX = re.compile(r"[0-9a-f]{64}")
digests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
# Text that looks like what an attacker would send: paths, hex of the wrong case or length.
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF./\\\n\0", max_size=80),
    digests.map(str.upper),
    digests.map(lambda d: d[:63]),
    digests.map(lambda d: d + "\n"),
    digests.map(lambda d: "../" + d),
)
names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?\Z")
versions = st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,3}\Z")


# -- digests ---------------------------------------------------------------------------------


@given(digests)
def test_a_lower_case_hex_digest_is_accepted(digest: str):
    assert is_sha256(digest)
    assert checked_sha256(digest) == digest


@given(hostile_text)
@example("/etc/passwd")
@example("../../x")
@example("\u0660" * 64)  # Arabic-Indic digits are digits, not hex
def test_anything_else_is_refused(text: str):
    assert is_sha256(text) == bool(HEX.fullmatch(text))
    if not HEX.fullmatch(text):
        with pytest.raises(InvalidDigest):
            checked_sha256(text)


@pytest.mark.parametrize("value", [None, 1, b"a" * 64, ["a" * 64]])
def test_a_digest_that_is_not_text_is_refused(value: object):
    assert not is_sha256(value)


# -- the store's path guard ------------------------------------------------------------------


@given(st.one_of(hostile_text, digests))
@example("/etc/passwd")
@example("../../../etc/passwd")
def test_the_store_builds_no_path_outside_itself_and_touches_nothing_there(text: str):
    with tempfile.TemporaryDirectory() as top:
        root, outside = Path(top) / "blobs", Path(top) / "outside"
        root.mkdir()
        (Path(top) / "tmp").mkdir()
        outside.write_bytes(b"secret")
        store = LocalBlobStore(root, Path(top) / "tmp")
        try:
            path = store.path(text)
        except InvalidDigest:
            assert not HEX.fullmatch(text)
            assert not store.exists(text)
            assert store.size(text) is None
            with pytest.raises(FileNotFoundError):
                store.open(text)
            store.delete(text)
            assert store.delete_unless_in_use(text)
            assert not store.set_aside(text, Path(top) / "aside")
        else:
            assert HEX.fullmatch(text)
            assert path.resolve().is_relative_to(root.resolve())
            assert path.name == text
        assert outside.read_bytes() == b"secret"


def test_a_path_named_as_a_digest_is_neither_read_nor_deleted(tmp_path: Path):
    root, tmp = tmp_path / "blobs", tmp_path / "tmp"
    root.mkdir()
    tmp.mkdir()
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    store = LocalBlobStore(root, tmp)
    for name in (str(secret), "../secret", "../../../" + str(secret).lstrip("/")):
        with pytest.raises(FileNotFoundError):
            store.open(name)
        store.delete(name)
        store.delete_unless_in_use(name)
    assert secret.read_bytes() == b"secret"


# -- file names ------------------------------------------------------------------------------


@given(names, versions, st.sampled_from(["py3-none-any", "cp312-cp312-manylinux_2_17_x86_64"]))
def test_a_wheel_of_the_project_is_accepted(name: str, version: str, tag: str):
    filename = f"{re.sub(r'[-_.]+', '_', name)}-{version}-{tag}.whl"
    assert filename_problem(filename, canonicalize_name(name)) is None


@given(names, versions, st.sampled_from([".tar.gz", ".zip", ".tar.bz2", ".tgz"]))
def test_an_sdist_of_the_project_is_accepted(name: str, version: str, suffix: str):
    assume(".." not in name)
    assert filename_problem(f"{name}-{version}{suffix}", canonicalize_name(name)) is None


@given(names, versions)
def test_a_legacy_egg_of_the_project_is_accepted(name: str, version: str):
    assume(".." not in name)
    egg = f"{re.sub(r'[-_.]+', '_', name)}-{version}-py2.7.egg"
    assert filename_problem(egg, canonicalize_name(name)) is None


@given(names, versions, names)
def test_another_projects_file_is_refused(name: str, version: str, other: str):
    assume(canonicalize_name(other) != canonicalize_name(name))
    assume(not canonicalize_name(other).startswith(canonicalize_name(name) + "-"))
    wheel = f"{re.sub(r'[-_.]+', '_', other)}-{version}-py3-none-any.whl"
    assert filename_problem(wheel, canonicalize_name(name)) is not None
    assert filename_problem(f"{other}-{version}.tar.gz", canonicalize_name(name)) is not None


@given(
    names,
    st.one_of(
        st.text(), st.text(alphabet=string.ascii_letters + "-_.0123456789/\\\0\n", max_size=60)
    ),
)
@example("foo", "../../foo-1.0.tar.gz")
@example("foo", "/etc/foo-1.0.tar.gz")
@example("foo", "foo-1.0\x00.tar.gz")
@example("foo", "")
def test_an_accepted_file_name_is_a_plain_name_of_the_project(name: str, filename: str):
    project = canonicalize_name(name)
    if filename_problem(filename, project) is not None:
        return
    assert filename
    assert not any(c in filename for c in "/\\\0")
    assert ".." not in filename
    assert not any(unicodedata.category(c).startswith("C") for c in filename)
    with tempfile.TemporaryDirectory() as top:
        assert (Path(top) / filename).resolve().parent == Path(top).resolve()
    stem = re.sub(r"(\.whl|\.tar\.gz|\.zip|\.tar\.bz2|\.tgz|\.egg)\Z", "", filename)
    assert any(canonicalize_name(stem[:i]) == project for i, c in enumerate(stem) if c == "-"), (
        filename
    )


# -- whole pages ------------------------------------------------------------------------------


@given(st.one_of(hostile_text, digests), st.one_of(st.none(), hostile_text, digests))
@example("/etc/passwd", None)
@example("a" * 64, "../../x")
def test_a_page_keeps_an_entry_only_with_valid_digests(sha256: str, metadata_sha256: str | None):
    data = {"filename": "demo-1.0-py3-none-any.whl", "url": "demo-1.0-py3-none-any.whl"}
    data["hashes"] = {"sha256": sha256}
    if metadata_sha256 is not None:
        data["core-metadata"] = {"sha256": metadata_sha256}
    page = ProjectPage.from_json_data(
        {"meta": {"api-version": "1.1"}, "name": "demo", "files": [data]},
        "https://upstream.invalid/simple/demo/",
    )
    files = checked_page("demo", page, None, None).files
    valid = is_sha256(sha256) and (metadata_sha256 is None or is_sha256(metadata_sha256))
    assert len(files) == (1 if valid else 0)
    for f in files:
        assert is_sha256(f.sha256)
        assert f.metadata_sha256 is None or is_sha256(f.metadata_sha256)


@given(st.text(max_size=40))
def test_html_fragments_yield_only_valid_digests(fragment: str):
    link = f'<a href="/files/demo-1.0.tar.gz#sha256={fragment}">demo-1.0.tar.gz</a>'
    page = ProjectPage.from_html("demo", link, base_url="https://upstream.invalid/simple/demo/")
    for f in checked_page("demo", page, None, None).files:
        assert f.sha256 is None or is_sha256(f.sha256)
    assert all(isinstance(p, DistributionPackage) for p in page.packages)


# -- project names ---------------------------------------------------------------------------


@given(st.one_of(names, st.text(max_size=30)))
@example("../etc")
@example("a\n")
def test_a_project_name_is_valid_exactly_when_the_spec_says(name: str):
    spec = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
    assert valid_project_name(name) == bool(spec.match(name))
    if valid_project_name(name):
        assert "/" not in name
        assert ".." not in canonicalize_name(name)


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> object:
    """An S3 store whose endpoint nothing listens on: any request it sent would fail."""
    s3storage = pytest.importorskip("pypicache.storage.s3")
    return s3storage.S3BlobStore(
        "bucket",
        "prefix",
        tmp_path_factory.mktemp("s3tmp"),
        endpoint_url="http://127.0.0.1:1",
        retries=0,
    )


@given(hostile_text)
@example("/etc/passwd")
@example("../../x")
def test_the_object_store_builds_no_key_from_a_non_digest(object_store, text: str):
    assume(not HEX.fullmatch(text))
    store = object_store
    with pytest.raises(InvalidDigest):
        store.key(text)
    assert not store.exists(text)
    assert store.size(text) is None
    with pytest.raises(FileNotFoundError):
        store.open(text)
    store.delete(text)
    assert store.delete_unless_in_use(text)
    assert not store.set_aside(text, store.tmp / "aside")
    assert store.download_url(text, "demo-1.0.tar.gz") is None


# -- free text -------------------------------------------------------------------------------


@given(st.one_of(st.text(), st.text(alphabet="\ud800\udfff\x00\x1b<>\"'&", max_size=50)))
@example("\ud800")
@example("a" * (TEXT_LIMIT + 5))
def test_upstream_text_is_storable_and_bounded(value: str):
    cleaned = upstream_text(value)
    if cleaned is None:
        assert value == ""
        return
    assert len(cleaned) <= TEXT_LIMIT
    cleaned.encode("utf-8")  # no lone surrogate: every database and page can hold it
    assert not any(unicodedata.category(c) == "Cc" and c != "\t" for c in cleaned)


def test_a_page_with_surrogates_and_huge_values_keeps_its_files_storable():
    sha256 = "a" * 64
    page = ProjectPage.from_json_data(
        {
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "files": [
                {
                    "filename": "demo-1.0.tar.gz",
                    "url": "demo-1.0.tar.gz",
                    "hashes": {"sha256": sha256},
                    "yanked": "\ud800 bad\x00reason",
                    "requires-python": ">=3\udfff",
                    "size": -5,
                }
            ],
        },
        "https://upstream.invalid/simple/demo/",
    )
    (entry,) = checked_page("demo", page, None, None).files
    assert entry.yanked
    assert entry.yanked_reason == "\ufffd bad\ufffdreason"
    assert entry.requires_python == ">=3\ufffd"
    assert entry.size is None


# -- serials -----------------------------------------------------------------------------


@given(st.one_of(st.text(), st.integers().map(str), st.integers(min_value=0).map(str)))
@example("9223372036854775807")
@example("9223372036854775808")
@example("1_000")
@example("-1")
@example("\u0661\u0662")
@example(" 12")
def test_a_serial_header_is_its_decimal_digits_when_they_fit_a_bigint(text: str):
    serial = parse_serial(text)
    digits = text.strip(" \t")
    fits = re.fullmatch(r"[0-9]+", digits, re.ASCII) is not None and int(digits) < SERIAL_LIMIT
    assert serial == (int(digits) if fits else None)


@given(st.one_of(st.integers(), st.booleans(), st.floats(), st.text(), st.none()))
@example(2**63)
@example(2**63 - 1)
@example(True)
def test_a_serial_value_is_kept_only_as_an_integer_a_bigint_holds(value: object):
    serial = checked_serial(value)
    if type(value) is int and 0 <= value < 2**63:
        assert serial == value
    else:
        assert serial is None
