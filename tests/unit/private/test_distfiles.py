from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import random
import tarfile
import zipfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pypicache.errors import UploadRejected
from pypicache.private.distfiles import ValidUpload, validate_file, validate_upload
from tests.support.dists import Dist, make_sdist, make_wheel

LIMIT = 1 << 20


def digests(content: bytes) -> dict[str, str]:
    return {
        "sha256_digest": hashlib.sha256(content).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(content, digest_size=32).hexdigest(),
    }


def form(dist: Dist, content: bytes | None = None) -> dict[str, list[str]]:
    """What twine 7 sends for `dist` (minus the file parts), digests over `content`."""
    wheel = dist.filename.endswith(".whl")
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": dist.name,
        "version": dist.version,
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "summary": f"Test distribution {dist.name}",
        "requires_python": "",
        **digests(dist.content if content is None else content),
    }
    return {key: [value] for key, value in fields.items()} | {
        "classifiers": ["Programming Language :: Python :: 3", "Private :: Do Not Upload"],
        "import_names": ["demo_pkg"],
    }


def upload(
    dist: Dist,
    *,
    content: bytes | None = None,
    filename: str | None = None,
    max_size: int = LIMIT,
    **changes: str | list[str] | None,
) -> ValidUpload:
    """Validate `dist` as uploaded, with form fields replaced (a list), set or dropped (None)."""
    fields = form(dist, content)
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value if isinstance(value, list) else [value]
    return validate_upload(
        fields,
        dist.filename if filename is None else filename,
        io.BytesIO(dist.content if content is None else content),
        max_size=max_size,
    )


def rejection(dist: Dist, **kwargs: Any) -> str:
    """The message of the 400 that `upload(dist, **kwargs)` must raise."""
    with pytest.raises(UploadRejected) as info:
        upload(dist, **kwargs)
    assert info.value.status == 400
    return info.value.message


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def tar_gz_of(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()


@pytest.fixture
def wheel() -> Dist:
    return make_wheel("demo_pkg", "1.0", requires_python=">=3.9")


@pytest.fixture
def sdist() -> Dist:
    return make_sdist("demo-pkg", "1.0")


# -- accepted ------------------------------------------------------------------------------


def test_valid_wheel(wheel: Dist) -> None:
    valid = upload(wheel)
    assert valid == ValidUpload(
        name="demo_pkg",
        project="demo-pkg",
        version="1.0",
        filetype="bdist_wheel",
        filename="demo_pkg-1.0-py3-none-any.whl",
        size=wheel.size,
        sha256=wheel.sha256,
        blake2_256=hashlib.blake2b(wheel.content, digest_size=32).hexdigest(),
        requires_python=">=3.9",
        metadata=wheel.metadata,
        metadata_sha256=wheel.metadata_sha256,
        summary="Test distribution demo_pkg",
    )


def test_valid_sdist(sdist: Dist) -> None:
    valid = upload(sdist)
    assert valid == ValidUpload(
        name="demo-pkg",
        project="demo-pkg",
        version="1.0",
        filetype="sdist",
        filename="demo_pkg-1.0.tar.gz",
        size=sdist.size,
        sha256=sdist.sha256,
        blake2_256=hashlib.blake2b(sdist.content, digest_size=32).hexdigest(),
        requires_python=None,
        metadata=None,
        metadata_sha256=None,
        summary="Test distribution demo-pkg",
    )


@pytest.mark.parametrize("name", ["demo-pkg", "demo_pkg", "Demo.Pkg"])
def test_twine_safe_name_and_uv_raw_name_both_accepted(wheel: Dist, name: str) -> None:
    valid = upload(wheel, name=name)
    assert (valid.name, valid.project) == ("demo_pkg", "demo-pkg")


def test_sdist_pyversion_may_be_absent(sdist: Dist) -> None:
    assert upload(sdist, pyversion=None).filetype == "sdist"


def test_protocol_version_defaults_to_1(wheel: Dist) -> None:
    assert upload(wheel, protocol_version=None).project == "demo-pkg"


@pytest.mark.parametrize("digest", ["sha256_digest", "blake2_256_digest"])
def test_one_digest_is_enough(wheel: Dist, digest: str) -> None:
    other = {"sha256_digest", "blake2_256_digest"} - {digest}
    assert upload(wheel, **dict.fromkeys(other)).size == wheel.size


def test_md5_from_old_twine_is_checked(wheel: Dist) -> None:
    md5 = hashlib.md5(wheel.content, usedforsecurity=False).hexdigest()
    assert upload(wheel, md5_digest=md5.upper()).size == wheel.size
    assert upload(wheel, md5_digest=md5, sha256_digest=None, blake2_256_digest=None)


def test_digests_are_case_insensitive(wheel: Dist) -> None:
    assert upload(wheel, sha256_digest=wheel.sha256.upper()).sha256 == wheel.sha256


def test_form_requires_python_wins_over_metadata(wheel: Dist) -> None:
    assert upload(wheel, requires_python=">=3.11").requires_python == ">=3.11"


def test_unknown_summary_falls_back_to_metadata(wheel: Dist) -> None:
    assert upload(wheel, summary="UNKNOWN").summary == "Test distribution demo_pkg"


def test_canonical_version_equality(wheel: Dist) -> None:
    """The form may say 1.0.0 for a file of release 1.0 (R88)."""
    assert upload(wheel, version="1.0.0").version == "1.0"


def test_sdist_filename_with_equivalent_version() -> None:
    dist = make_sdist("demo", "1.0")
    assert upload(dist, filename="demo-1.0.0.tar.gz", version="1.0.0").version == "1.0"


def test_wheel_with_unnormalized_dist_info_directory() -> None:
    content = zip_of({"Demo.Pkg-1.0.dist-info/METADATA": metadata("Demo.Pkg", "1.0")})
    dist = Dist("demo_pkg-1.0-py3-none-any.whl", content, None, "Demo.Pkg", "1.0")
    assert upload(dist).metadata == metadata("Demo.Pkg", "1.0")


def test_unknown_fields_are_ignored(wheel: Dist) -> None:
    fields = {"Description-Content-Type": "text/markdown", "requires_dist": ["a", "b"]}
    assert upload(wheel, **fields).project == "demo-pkg"


def test_max_size_is_inclusive(wheel: Dist) -> None:
    assert upload(wheel, max_size=wheel.size).size == wheel.size


# -- the form ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0", "2", "1.0"])
def test_unknown_protocol_version(wheel: Dist, version: str) -> None:
    assert rejection(wheel, protocol_version=version) == "Unknown protocol version."


@pytest.mark.parametrize("filetype", ["bdist_egg", "bdist_wininst", "wheel", None])
def test_unknown_filetype(wheel: Dist, filetype: str | None) -> None:
    assert rejection(wheel, filetype=filetype) == "Use a known file type."


def test_wheel_needs_pyversion(wheel: Dist) -> None:
    assert (
        rejection(wheel, pyversion="")
        == "Python version is required for binary distribution uploads."
    )


def test_sdist_pyversion_must_be_source(sdist: Dist) -> None:
    assert rejection(sdist, pyversion="py3") == "Use 'source' as Python version for an sdist."


@pytest.mark.parametrize("name", ["-demo", "demo pkg", "demo/pkg", "démo"])
def test_invalid_name(wheel: Dist, name: str) -> None:
    assert rejection(wheel, name=name) == (
        f"{name!r} is an invalid value for Name. Error: Start and end with a letter or numeral "
        "containing only ASCII numeric and '.', '_' and '-'."
    )


@pytest.mark.parametrize("name", [None, "", "UNKNOWN"])
def test_missing_name(wheel: Dist, name: str | None) -> None:
    assert rejection(wheel, name=name) == (
        "'' is an invalid value for Name. Error: This field is required."
    )


def test_long_invalid_value_is_shortened(wheel: Dist) -> None:
    message = rejection(wheel, name="x" * 100 + "-")
    assert message.startswith(f"'{'x' * 30}...{'x' * 29}-' is an invalid value for Name.")


def test_names_longer_than_the_database_holds() -> None:
    dist = make_wheel("n" * 256, "1.0")
    assert rejection(dist).endswith(
        "is an invalid value for Name. Error: Use at most 255 characters."
    )


def test_versions_longer_than_the_database_holds() -> None:
    dist = make_wheel("demo", "1." + ".".join(["0"] * 130))
    assert rejection(dist).endswith(
        "is an invalid value for Version. Error: Use at most 255 characters."
    )


def test_filenames_longer_than_the_database_holds() -> None:
    dist = make_wheel("n" * 250, "1." + ".".join(["0"] * 126))
    assert len(dist.filename) > 512
    assert rejection(dist) == "Filename too long: use at most 512 characters."


def test_a_name_of_the_longest_length_is_fine() -> None:
    assert upload(make_wheel("n" * 255, "1.0")).name == "n" * 255


@pytest.mark.parametrize(
    ("version", "error"),
    [
        (None, "This field is required."),
        ("", "This field is required."),
        ("one", "Use a valid PEP 440 version."),
        ("1.0-banana", "Use a valid PEP 440 version."),
        (" 1.0", "Cannot have leading or trailing whitespace."),
    ],
)
def test_invalid_version(wheel: Dist, version: str | None, error: str) -> None:
    assert rejection(wheel, version=version) == (
        f"{version or ''!r} is an invalid value for Version. Error: {error}"
    )


def test_metadata_version_required(wheel: Dist) -> None:
    assert rejection(wheel, metadata_version=None) == (
        "'' is an invalid value for Metadata-Version. Error: This field is required."
    )


def test_null_bytes(wheel: Dist) -> None:
    message = rejection(wheel, description="evil\x00")
    assert message == "Null bytes are not allowed in fields."


def test_null_bytes_in_repeated_field(wheel: Dist) -> None:
    message = rejection(wheel, classifiers=["ok", "bad\x00"])
    assert message == "Null bytes are not allowed in fields."


@pytest.mark.parametrize("field", ["name", "version", "filetype", "sha256_digest", "summary"])
def test_duplicated_single_valued_field(wheel: Dist, field: str) -> None:
    value = form(wheel)[field][0]
    assert rejection(wheel, **{field: [value, value]}) == (
        f"Field '{field}' must not be given more than once."
    )


def test_at_least_one_digest(wheel: Dist) -> None:
    message = rejection(wheel, sha256_digest=None, blake2_256_digest="", md5_digest="UNKNOWN")
    assert message == "Include at least one message digest."


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("sha256_digest", "abc", "SHA256"),
        ("sha256_digest", "g" * 64, "SHA256"),
        ("sha256_digest", "a" * 64 + "\n", "SHA256"),
        ("blake2_256_digest", "a" * 63, "BLAKE2"),
        ("md5_digest", "a" * 64, "MD5"),
    ],
)
def test_malformed_digest(wheel: Dist, field: str, value: str, label: str) -> None:
    message = rejection(wheel, **{field: value})
    assert message == f"Use a valid, hex-encoded, {label} message digest."


@pytest.mark.parametrize("field", ["sha256_digest", "blake2_256_digest", "md5_digest"])
def test_mismatching_digest(wheel: Dist, field: str) -> None:
    message = rejection(wheel, **{field: "0" * (32 if field == "md5_digest" else 64)})
    assert message == (
        "The digest supplied does not match a digest calculated from the uploaded file."
    )


# -- the filename --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename", ["../demo_pkg-1.0-py3-none-any.whl", "a/b.whl", "..\\demo_pkg-1.0.tar.gz"]
)
def test_filename_with_path(wheel: Dist, filename: str) -> None:
    assert rejection(wheel, filename=filename) == (
        "Cannot upload a file with '/' or '\\' in the name."
    )


@pytest.mark.parametrize("char", ["\x00", "\n", "\r", "\t", "\x1b", "\x7f"])
def test_filename_with_control_characters(wheel: Dist, char: str) -> None:
    assert rejection(wheel, filename=f"demo_pkg-1.0-py3-none-any{char}.whl") == (
        "Cannot upload a file with non-printable characters (ascii code < 32) "
        "or the DEL character in the name."
    )


@pytest.mark.parametrize(
    "filename",
    ["demo_pkg-1.0.zip", "demo_pkg-1.0.egg", "demo_pkg-1.0.tar.bz2", "demo_pkg-1.0.WHL", ""],
)
def test_wrong_extension(wheel: Dist, filename: str) -> None:
    assert rejection(wheel, filename=filename) == (
        "Invalid file extension: Use .tar.gz or .whl (see PEP 527 / 715)."
    )


def test_filetype_must_match_extension(wheel: Dist, sdist: Dist) -> None:
    assert rejection(wheel, filetype="sdist", pyversion="source") == (
        "Invalid file extension for sdist: use .tar.gz."
    )
    assert rejection(sdist, filetype="bdist_wheel", pyversion="py3") == (
        "Invalid file extension for bdist_wheel: use .whl."
    )


def test_unparsable_wheel_filename(wheel: Dist) -> None:
    message = rejection(wheel, filename="demo_pkg-1.0.whl")
    assert message.startswith("Invalid wheel filename")


def test_wheel_filename_for_another_project(wheel: Dist) -> None:
    message = rejection(wheel, filename="other-1.0-py3-none-any.whl")
    assert message == "Start filename for 'demo_pkg' with 'demo_pkg-'."


def test_wheel_filename_for_another_version(wheel: Dist) -> None:
    message = rejection(wheel, version="2.0")
    assert message == "Version in filename should be '2.0' not '1.0'."


def test_sdist_filename_for_another_project(sdist: Dist) -> None:
    message = rejection(sdist, name="demo")
    assert message == "Start filename for 'demo' with 'demo-'."


@pytest.mark.parametrize("filename", ["Demo-Pkg-1.0.tar.gz", "demo.pkg-1.0.tar.gz"])
def test_sdist_filename_must_follow_pep_625(sdist: Dist, filename: str) -> None:
    message = rejection(sdist, filename=filename)
    assert message == "Start filename for 'demo-pkg' with 'demo_pkg-'."


def test_sdist_filename_for_another_version(sdist: Dist) -> None:
    message = rejection(sdist, filename="demo_pkg-1.1.tar.gz")
    assert message == "Version in filename should be '1.0' not '1.1'."


def test_sdist_filename_without_a_version(sdist: Dist) -> None:
    message = rejection(sdist, filename="demo_pkg-latest.tar.gz")
    assert message == "Version in filename should be '1.0' not 'latest'."


# -- the bytes -----------------------------------------------------------------------------


def test_over_size(wheel: Dist) -> None:
    message = rejection(wheel, max_size=wheel.size - 1)
    assert message == f"File too large. Limit for this index is {wheel.size - 1} bytes."


def test_empty_file(wheel: Dist) -> None:
    assert rejection(wheel, content=b"") == "Cannot upload an empty file."


# -- the archive ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"not a zip at all", b"PK\x03\x04" + b"\x00" * 100],
)
def test_corrupt_zip(wheel: Dist, content: bytes) -> None:
    assert rejection(wheel, content=content) == "Invalid distribution file."


def test_truncated_wheel(wheel: Dist) -> None:
    content = wheel.content[: len(wheel.content) // 2]
    assert rejection(wheel, content=content) == "Invalid distribution file."


def test_wheel_with_damaged_metadata_member(wheel: Dist) -> None:
    """The central directory is fine, the deflated METADATA is garbage."""
    start = wheel.content.index(b"demo_pkg-1.0.dist-info/METADATA") + 40
    content = wheel.content[:start] + b"\xff" * 20 + wheel.content[start + 20 :]
    assert rejection(wheel, content=content) == "Invalid distribution file."


@pytest.mark.parametrize(
    "members",
    [
        {"demo_pkg/__init__.py": b""},
        {"demo_pkg-1.1.dist-info/METADATA": metadata("demo_pkg", "1.1")},
        {"other-1.0.dist-info/METADATA": metadata("other", "1.0")},
        {"demo_pkg-1.0.dist-info/metadata": metadata("demo_pkg", "1.0")},
        {"sub/demo_pkg-1.0.dist-info/METADATA": metadata("demo_pkg", "1.0")},
    ],
)
def test_wheel_without_metadata(wheel: Dist, members: dict[str, bytes]) -> None:
    message = rejection(wheel, content=zip_of(members))
    assert message == (
        "Wheel 'demo_pkg-1.0-py3-none-any.whl' does not contain the required METADATA file: "
        "demo_pkg-1.0.dist-info/METADATA"
    )


def test_wheel_with_two_metadata_files(wheel: Dist) -> None:
    content = zip_of(
        {
            "demo_pkg-1.0.dist-info/METADATA": metadata("demo_pkg", "1.0"),
            "Demo_Pkg-1.0.dist-info/METADATA": metadata("Demo_Pkg", "1.0"),
        }
    )
    message = rejection(wheel, content=content)
    assert message == "Wheel 'demo_pkg-1.0-py3-none-any.whl' contains more than one METADATA file."


def test_huge_metadata_member(wheel: Dist) -> None:
    """A METADATA too large for any real one is refused after reading just past the cap."""
    content = zip_of({"demo_pkg-1.0.dist-info/METADATA": random.randbytes(10 * 1024 * 1024 + 1)})
    message = rejection(wheel, content=content, max_size=12 * 1024 * 1024)
    assert message == "demo_pkg-1.0.dist-info/METADATA is larger than 10485760 bytes."


def test_metadata_zip_bomb(wheel: Dist) -> None:
    """A METADATA that inflates 1000:1 is refused on the central directory, before reading."""
    content = zip_of({"demo_pkg-1.0.dist-info/METADATA": b"\n" * (10 * 1024 * 1024 + 1)})
    message = rejection(wheel, content=content)
    assert message.startswith(
        "Invalid distribution file: 'demo_pkg-1.0-py3-none-any.whl' unpacks to more than"
    )


def _zip_with(extra: dict[str, bytes]) -> bytes:
    return zip_of({"demo_pkg-1.0.dist-info/METADATA": metadata("demo_pkg", "1.0"), **extra})


def test_wheel_that_unpacks_to_too_much(wheel: Dist) -> None:
    """Members each under the floor, together over 50 times the wheel's size (and the floor)."""
    content = _zip_with({f"zeros{i}.bin": bytes(4 * 1024 * 1024) for i in range(3)})
    message = rejection(wheel, content=content)
    assert message == (
        "Invalid distribution file: 'demo_pkg-1.0-py3-none-any.whl' unpacks to more than "
        "10485760 bytes."
    )


def test_wheel_member_compressed_too_well(wheel: Dist) -> None:
    """Within the total budget (random padding makes the wheel large), one member is a bomb."""
    content = _zip_with(
        {"padding.bin": random.randbytes(1024 * 1024), "zeros.bin": bytes(20 * 1024 * 1024)}
    )
    message = rejection(wheel, content=content, max_size=4 * 1024 * 1024)
    assert message.startswith(
        "Invalid distribution file: 'zeros.bin' in 'demo_pkg-1.0-py3-none-any.whl' "
        "is compressed more than 100:1"
    )


def test_large_incompressible_wheel_is_accepted(wheel: Dist) -> None:
    content = _zip_with({"data.bin": random.randbytes(11 * 1024 * 1024)})
    assert upload(wheel, content=content, max_size=12 * 1024 * 1024).size == len(content)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            metadata("other", "1.0"),
            "Name 'other' in demo_pkg-1.0.dist-info/METADATA does not match "
            "the uploaded name 'demo_pkg'.",
        ),
        (
            b"Metadata-Version: 2.1\nVersion: 1.0\n\n",
            "Name '' in demo_pkg-1.0.dist-info/METADATA does not match "
            "the uploaded name 'demo_pkg'.",
        ),
        (
            b"Metadata-Version: 2.1\nName: demo_pkg\n\n",
            "Version '' in demo_pkg-1.0.dist-info/METADATA does not match "
            "the uploaded version '1.0'.",
        ),
        (
            metadata("demo_pkg", "1.1"),
            "Version '1.1' in demo_pkg-1.0.dist-info/METADATA does not match "
            "the uploaded version '1.0'.",
        ),
    ],
)
def test_wheel_metadata_must_match_form(wheel: Dist, meta: bytes, message: str) -> None:
    content = zip_of({"demo_pkg-1.0.dist-info/METADATA": meta})
    assert rejection(wheel, content=content) == message


@pytest.mark.parametrize(
    "content", [b"not gzip", gzip.compress(b"not a tar" * 100, mtime=0), b"\x1f\x8b\x08\x00garbage"]
)
def test_corrupt_tar_gz(sdist: Dist, content: bytes) -> None:
    assert rejection(sdist, content=content) == "Invalid distribution file."


def test_truncated_sdist(sdist: Dist) -> None:
    content = sdist.content[: len(sdist.content) // 2]
    assert rejection(sdist, content=content) == "Invalid distribution file."


def test_sdist_without_pkg_info(sdist: Dist) -> None:
    content = tar_gz_of({"demo_pkg-1.0/setup.py": b"", "demo_pkg-1.0/src/PKG-INFO": b""})
    assert rejection(sdist, content=content) == (
        "Sdist 'demo_pkg-1.0.tar.gz' does not contain the required PKG-INFO file: "
        "demo_pkg-1.0/PKG-INFO"
    )


@pytest.mark.parametrize(
    "members",
    [
        {},
        {"PKG-INFO": metadata("demo-pkg", "1.0")},
        {"other-1.0/PKG-INFO": metadata("demo-pkg", "1.0")},
        {
            "demo_pkg-1.0/PKG-INFO": metadata("demo-pkg", "1.0"),
            "extra/file.txt": b"",
        },
    ],
)
def test_sdist_needs_one_top_level_directory(sdist: Dist, members: dict[str, bytes]) -> None:
    assert rejection(sdist, content=tar_gz_of(members)) == (
        "Sdist 'demo_pkg-1.0.tar.gz' must contain exactly one top-level directory, 'demo_pkg-1.0/'."
    )


def test_sdist_with_legacy_top_level_directory(sdist: Dist) -> None:
    """Older setuptools kept the display name in the directory; PEP 625 only fixes the filename."""
    content = tar_gz_of({"Demo-Pkg-1.0/PKG-INFO": metadata("Demo-Pkg", "1.0")})
    assert upload(sdist, content=content).name == "Demo-Pkg"


def test_sdist_metadata_must_match_form(sdist: Dist) -> None:
    content = tar_gz_of({"demo_pkg-1.0/PKG-INFO": metadata("demo-pkg", "1.0.1")})
    assert rejection(sdist, content=content) == (
        "Version '1.0.1' in demo_pkg-1.0/PKG-INFO does not match the uploaded version '1.0'."
    )


def test_sdist_that_unpacks_to_too_much() -> None:
    """Skipping tar members decompresses them: a gzip bomb is refused by the declared sizes."""
    dist = make_sdist("demo", "1.0", extra_files={"zeros.bin": bytes(11 * 1024 * 1024)})
    message = rejection(dist)
    assert message.startswith("Invalid distribution file: 'demo-1.0.tar.gz' unpacks to more than")


# -- requires_python -----------------------------------------------------------------------


def test_invalid_requires_python_in_form(wheel: Dist) -> None:
    assert rejection(wheel, requires_python=">=3.x") == (
        "'>=3.x' is an invalid value for Requires-Python. "
        "Error: Use a valid PEP 440 version specifier."
    )


def test_invalid_requires_python_in_metadata() -> None:
    dist = make_sdist("demo", "1.0", requires_python="three or later")
    assert rejection(dist) == (
        "'three or later' is an invalid value for Requires-Python. "
        "Error: Use a valid PEP 440 version specifier."
    )


# -- a file without twine's form (the admin page's upload) -------------------------------------


@pytest.mark.parametrize(
    "dist",
    [make_wheel("Acme.Utils", "1.0"), make_sdist("acme-utils", "1.0")],
    ids=["wheel", "sdist"],
)
def test_a_bare_file_is_validated_from_its_name_and_metadata(dist: Dist):
    valid = validate_file(dist.filename, io.BytesIO(dist.content), max_size=LIMIT)
    assert (valid.project, valid.version, valid.sha256) == ("acme-utils", "1.0", dist.sha256)
    assert valid.filetype == ("bdist_wheel" if dist.filename.endswith(".whl") else "sdist")


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("acme_utils-2.0-py3-none-any.whl", "does not contain the required METADATA"),
        ("acme_utils-1.0.zip", "Invalid file extension"),
        ("acme_tools-1.0-py3-none-any.whl", "does not contain the required METADATA"),
        ("acme_utils.whl", "Invalid wheel filename"),
    ],
)
def test_a_bare_file_whose_name_lies_is_refused(filename: str, message: str):
    wheel = make_wheel("acme-utils", "1.0")
    with pytest.raises(UploadRejected, match=message):
        validate_file(filename, io.BytesIO(wheel.content), max_size=LIMIT)


# -- arbitrary input -----------------------------------------------------------------------

_FIELD_NAMES = st.sampled_from(
    [
        "protocol_version", "name", "version", "metadata_version", "filetype", "pyversion",
        "sha256_digest", "md5_digest", "blake2_256_digest", "requires_python", "summary",
        "classifiers", "\x00", "",
    ]
)  # fmt: skip
_TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["1", "sdist", "bdist_wheel", "source", "py3", "demo_pkg", "1.0", "UNKNOWN"]),
    st.text(st.sampled_from("0123456789abcdef"), min_size=32, max_size=64),
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(_FIELD_NAMES | st.text(max_size=20), st.lists(_TEXT, max_size=3)),
    filename=st.one_of(
        st.text(max_size=80),
        st.sampled_from(["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]),
        st.builds(lambda a, b: f"{a}-{b}-py3-none-any.whl", _TEXT, _TEXT),
        st.builds(lambda a, b: f"{a}-{b}.tar.gz", _TEXT, _TEXT),
    ),
    content=st.one_of(st.binary(max_size=200), st.sampled_from([b"PK\x03\x04", b"\x1f\x8b"])),
)
def test_arbitrary_form_fields_and_filenames_only_ever_are_rejected(fields, filename, content):
    with contextlib.suppress(UploadRejected):
        validate_upload(fields, filename, io.BytesIO(content), max_size=LIMIT)


@settings(max_examples=200, deadline=None)
@given(filename=st.text(max_size=120), content=st.binary(max_size=200))
def test_arbitrary_filenames_from_the_admin_page_only_ever_are_rejected(filename, content):
    with contextlib.suppress(UploadRejected):
        validate_file(filename, io.BytesIO(content), max_size=LIMIT)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    members=st.dictionaries(
        st.text(  # zipfile cuts a name at NUL; a name it cannot write tests nothing
            st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
            min_size=1,
            max_size=40,
        ),
        st.binary(max_size=100),
        max_size=5,
    )
)
def test_arbitrary_wheel_contents_only_ever_are_rejected(wheel, members):
    content = zip_of({"demo_pkg-1.0.dist-info/METADATA": metadata("demo_pkg", "1.0"), **members})
    with contextlib.suppress(UploadRejected):
        upload(wheel, content=content)


def test_wheel_with_a_huge_file_list(wheel: Dist) -> None:
    """17,000 entries with 1000-character names: a directory of 17 MiB, refused unread."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("demo_pkg-1.0.dist-info/METADATA", metadata("demo_pkg", "1.0"))
        for i in range(17_000):
            archive.writestr(f"demo_pkg/{i:08d}{'x' * 983}", b"")
    message = rejection(wheel, content=buffer.getvalue(), max_size=64 * 1024 * 1024)
    assert message == (
        "Invalid distribution file: the file list of 'demo_pkg-1.0-py3-none-any.whl' "
        "takes more than 16777216 bytes."
    )


def test_sdist_of_many_empty_members_unpacks_to_too_much() -> None:
    """Empty members cost their 512-byte headers: 30,000 of them unpack to 15 MiB."""
    members = {"demo_pkg-1.0/PKG-INFO": metadata("demo-pkg", "1.0")}
    members |= {f"demo_pkg-1.0/e{i}": b"" for i in range(30_000)}
    content = tar_gz_of(members)
    dist = make_sdist("demo-pkg", "1.0")
    message = rejection(dist, content=content)
    assert message.startswith(
        "Invalid distribution file: 'demo_pkg-1.0.tar.gz' unpacks to more than"
    )


def test_zip64_wheel_of_many_files_is_accepted(wheel: Dist) -> None:
    """More than 65,535 entries make zipfile write the zip64 end records, read here too."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("demo_pkg-1.0.dist-info/METADATA", metadata("demo_pkg", "1.0"))
        for i in range(70_000):
            archive.writestr(f"demo_pkg/{i}", b"")
    content = buffer.getvalue()
    assert b"PK\x06\x06" in content[-200:]
    assert upload(wheel, content=content, max_size=64 * 1024 * 1024).size == len(content)
