"""Validates an uploaded distribution file before anything is stored.

The checks, their order and their messages follow Warehouse's legacy upload endpoint
(standards §10, R80-R92), so twine and ``uv publish`` users read here what they would read
from the public index. Nothing is extracted: archives are only listed, and the one metadata
member is read with a size cap.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, BinaryIO, NamedTuple

from packaging.metadata import RawMetadata, parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pypicache.errors import InvalidName, UploadRejected
from pypicache.models import FILENAME_LENGTH, NAME_LENGTH, VERSION_LENGTH
from pypicache.names import normalize_project

# Fields a client sends at most once; a repeated one is a client bug we refuse to guess about.
_SINGLE_VALUED = frozenset(
    {
        "protocol_version",
        "name",
        "version",
        "metadata_version",
        "filetype",
        "pyversion",
        "comment",
        "md5_digest",
        "sha256_digest",
        "blake2_256_digest",
        "requires_python",
        "summary",
        "description",
        "description_content_type",
        "author",
        "author_email",
        "maintainer",
        "maintainer_email",
        "license",
        "license_expression",
        "keywords",
        "home_page",
        "download_url",
    }
)

# distutils filled "required" fields it did not know with UNKNOWN; it never means anything.
_ABSENT = ("", "UNKNOWN")

_EXTENSIONS = {"sdist": ".tar.gz", "bdist_wheel": ".whl"}

# Form field -> (hex length, name in the message). md5 only comes from twine < 6.2.
_DIGESTS = {
    "md5_digest": (32, "MD5"),
    "sha256_digest": (64, "SHA256"),
    "blake2_256_digest": (64, "BLAKE2"),
}

_NAME_RULE = (
    "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."
)
_CHUNK = 1 << 20
_METADATA_LIMIT = 10 << 20  # no real METADATA / PKG-INFO comes near this; bombs do

# Skipping over tar members decompresses them: an sdist may unpack to at most this many times
# its size (Warehouse's limit for zips), or to the floor, which is cheap whatever the ratio.
_UNPACK_RATIO = 50
_UNPACK_FLOOR = 10 << 20
# A wheel is checked on its central directory, which says what installers would unpack: the
# same total budget, and no single member above the floor compressed more than this (deflate
# reaches about 1000:1 on runs of one byte, real files stay far below).
_MEMBER_RATIO = 100
# zipfile keeps an object per central directory entry, tarfile one per member: both lists are
# capped before they grow (a wheel's directory of 20,000 files takes about 3 MiB).
_ZIP_DIRECTORY_LIMIT = 16 << 20
_MAX_MEMBERS = 200_000
_END_OF_DIRECTORY = struct.Struct("<4s4x2H2LH")  # the zip's end record (22 bytes + comment)
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")

# What zipfile, tarfile and the decompressors raise on damaged or hostile input.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,  # encrypted zip members, unsupported compression methods
)


@dataclass(frozen=True)
class ValidUpload:
    """Everything the index records about an accepted file; the bytes stay in the stream."""

    name: str  # the display name, from the file's own metadata (twine's form sends safe-name)
    project: str  # normalized
    version: str  # as in the file's metadata
    filetype: str  # "sdist" | "bdist_wheel"
    filename: str
    size: int
    sha256: str
    blake2_256: str
    requires_python: str | None
    metadata: bytes | None  # wheel: exact METADATA bytes (served as PEP 658 .metadata)
    metadata_sha256: str | None
    summary: str | None


@dataclass(frozen=True)
class _Form:
    """The form fields we act on, checked and with absent values as None."""

    name: str
    project: str
    version: str
    filetype: str
    digests: dict[str, str]  # form field -> lower-case hex, only those supplied
    requires_python: str | None
    summary: str | None


class _Received(NamedTuple):
    size: int
    digests: dict[str, str]  # form field name -> lower-case hex of the bytes received


class _Member(NamedTuple):
    path: str
    data: bytes


def validate_upload(
    fields: Mapping[str, Sequence[str]],
    filename: str,
    content: BinaryIO,
    *,
    max_size: int,
) -> ValidUpload:
    """Check an upload completely; raise UploadRejected at the first problem.

    `fields` holds every form field except the file parts.
    """
    return _validate(_read_form(fields), filename, content, max_size)


def validate_file(filename: str, content: BinaryIO, *, max_size: int) -> ValidUpload:
    """Check a file sent without twine's form fields (the admin page's upload).

    The same checks as `validate_upload`, with name, version and type read from
    the filename; the archive's metadata must then agree with them.
    """
    return _validate(_form_from_filename(filename), filename, content, max_size)


def _validate(form: _Form, filename: str, content: BinaryIO, max_size: int) -> ValidUpload:
    _check_lengths(filename, form)
    _check_filename(filename, form)
    received = _receive(content, max_size)
    _check_digests(form.digests, received.digests)
    member = _metadata_member(filename, form, content, received.size)
    metadata = _check_core_metadata(member, form)
    if len(metadata["name"]) > NAME_LENGTH:
        raise _invalid("Name", metadata["name"], f"Use at most {NAME_LENGTH} characters.")
    is_wheel = form.filetype == "bdist_wheel"
    return ValidUpload(
        name=metadata["name"],
        project=form.project,
        version=metadata["version"],
        filetype=form.filetype,
        filename=filename,
        size=received.size,
        sha256=received.digests["sha256_digest"],
        blake2_256=received.digests["blake2_256_digest"],
        requires_python=_requires_python(form.requires_python or metadata.get("requires_python")),
        metadata=member.data if is_wheel else None,
        metadata_sha256=hashlib.sha256(member.data).hexdigest() if is_wheel else None,
        summary=form.summary or metadata.get("summary"),
    )


# -- form fields ---------------------------------------------------------------------------


def _read_form(fields: Mapping[str, Sequence[str]]) -> _Form:
    """The form's fields, in Warehouse's order of checks (R80-R82)."""
    _check_raw_fields(fields)
    if (_value(fields, "protocol_version") or "1") != "1":
        raise UploadRejected("Unknown protocol version.")
    filetype = _filetype(fields)
    name, project = _name(fields)
    version = _version(fields)
    if _value(fields, "metadata_version") is None:
        raise _invalid("Metadata-Version", "", "This field is required.")
    return _Form(
        name=name,
        project=project,
        version=version,
        filetype=filetype,
        digests=_digests(fields),
        requires_python=_value(fields, "requires_python"),
        summary=_value(fields, "summary"),
    )


def _form_from_filename(filename: str) -> _Form:
    """What twine would have sent for this file, as far as its name tells; no digests."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            filetype, sent_name = "bdist_wheel", filename.split("-", 1)[0]
        elif filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
            filetype, sent_name = "sdist", filename.rsplit("-", 1)[0]
        else:
            raise UploadRejected("Invalid file extension: Use .tar.gz or .whl (see PEP 527 / 715).")
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise UploadRejected(str(exc)) from None
    return _Form(
        name=sent_name,
        project=name,
        version=str(version),
        filetype=filetype,
        digests={},
        requires_python=None,
        summary=None,
    )


def _check_raw_fields(fields: Mapping[str, Sequence[str]]) -> None:
    """NUL breaks storage and logs; a repeated single field is ambiguous (R84)."""
    for key, values in fields.items():
        if "\x00" in key or any("\x00" in value for value in values):
            raise UploadRejected("Null bytes are not allowed in fields.")
        if key in _SINGLE_VALUED and len(values) > 1:
            raise UploadRejected(f"Field '{key}' must not be given more than once.")


def _value(fields: Mapping[str, Sequence[str]], key: str) -> str | None:
    """A single-valued field, None when absent, empty or distutils' UNKNOWN."""
    values = fields.get(key) or ()
    if not values or values[0].strip() in _ABSENT:
        return None
    return values[0]


def _filetype(fields: Mapping[str, Sequence[str]]) -> str:
    """`filetype`, with the `pyversion` that must go with it (R81, PEP 527)."""
    filetype = _value(fields, "filetype")
    if filetype not in _EXTENSIONS:
        raise UploadRejected("Use a known file type.")
    pyversion = _value(fields, "pyversion")
    if filetype == "sdist" and pyversion not in (None, "source"):
        raise UploadRejected("Use 'source' as Python version for an sdist.")
    if filetype != "sdist" and pyversion is None:
        raise UploadRejected("Python version is required for binary distribution uploads.")
    return filetype


def _name(fields: Mapping[str, Sequence[str]]) -> tuple[str, str]:
    """`name` as sent (twine's safe-name or uv's raw Name, R83) and its normalized form."""
    name = _value(fields, "name") or ""
    if not name:
        raise _invalid("Name", name, "This field is required.")
    try:
        return name, normalize_project(name)
    except InvalidName:
        raise _invalid("Name", name, _NAME_RULE) from None


def _version(fields: Mapping[str, Sequence[str]]) -> str:
    """`version`: a PEP 440 version, without the whitespace Version() would forgive."""
    version = _value(fields, "version") or ""
    if not version:
        raise _invalid("Version", version, "This field is required.")
    try:
        Version(version)
    except InvalidVersion:
        raise _invalid("Version", version, "Use a valid PEP 440 version.") from None
    if version != version.strip():
        raise _invalid("Version", version, "Cannot have leading or trailing whitespace.")
    return version


def _digests(fields: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The supplied digests, well-formed; at least one is required to check the bytes."""
    digests = {}
    for key, (length, label) in _DIGESTS.items():
        value = _value(fields, key)
        if value is None:
            continue
        if not re.fullmatch(f"[0-9a-f]{{{length}}}", value, re.IGNORECASE):
            raise UploadRejected(f"Use a valid, hex-encoded, {label} message digest.")
        digests[key] = value.lower()
    if not digests:
        raise UploadRejected("Include at least one message digest.")
    return digests


def _invalid(label: str, value: str, reason: str) -> UploadRejected:
    """Warehouse's wording for a bad metadata field, with long values shortened."""
    if len(value) > 60:
        value = f"{value[:30]}...{value[-30:]}"
    return UploadRejected(f"{value!r} is an invalid value for {label}. Error: {reason}")


# -- the filename --------------------------------------------------------------------------


def _check_lengths(filename: str, form: _Form) -> None:
    """What the database's columns hold: PostgreSQL refuses longer values (SQLite keeps them)."""
    if len(filename) > FILENAME_LENGTH:
        raise UploadRejected(f"Filename too long: use at most {FILENAME_LENGTH} characters.")
    if len(form.name) > NAME_LENGTH:
        raise _invalid("Name", form.name, f"Use at most {NAME_LENGTH} characters.")
    if len(form.version) > VERSION_LENGTH:
        raise _invalid("Version", form.version, f"Use at most {VERSION_LENGTH} characters.")


def _check_filename(filename: str, form: _Form) -> None:
    """Safe to use as a storage key and a URL, and naming the release the form describes."""
    if any(ord(char) < 32 or char == "\x7f" for char in filename):
        raise UploadRejected(
            "Cannot upload a file with non-printable characters (ascii code < 32) "
            "or the DEL character in the name."
        )
    if "/" in filename or "\\" in filename:
        raise UploadRejected("Cannot upload a file with '/' or '\\' in the name.")
    if not filename.endswith(tuple(_EXTENSIONS.values())):
        raise UploadRejected("Invalid file extension: Use .tar.gz or .whl (see PEP 527 / 715).")
    extension = _EXTENSIONS[form.filetype]
    if not filename.endswith(extension):
        raise UploadRejected(f"Invalid file extension for {form.filetype}: use {extension}.")
    if form.filetype == "bdist_wheel":
        _check_wheel_filename(filename, form)
    else:
        _check_sdist_filename(filename, form)


def _check_wheel_filename(filename: str, form: _Form) -> None:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise UploadRejected(str(exc)) from None
    if name != form.project:
        raise UploadRejected(f"Start filename for {form.name!r} with {_escape(form.name) + '-'!r}.")
    _check_filename_version(str(version), form)


def _check_sdist_filename(filename: str, form: _Form) -> None:
    """PEP 625: `{escaped name}-{version}.tar.gz`, which PyPI now requires too."""
    prefix = _escape(form.name) + "-"
    if not filename.startswith(prefix):
        raise UploadRejected(f"Start filename for {form.name!r} with {prefix!r}.")
    _check_filename_version(filename[len(prefix) : -len(".tar.gz")], form)


def _check_filename_version(version: str, form: _Form) -> None:
    if not _same_version(version, form.version):
        raise UploadRejected(f"Version in filename should be {form.version!r} not {version!r}.")


def _escape(name: str) -> str:
    """The name as filenames spell it (binary distribution format, PEP 625)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _same_version(left: str, right: str) -> bool:
    """Equal as releases: `1.0` and `1.0.0` are one release (R88); invalid never matches."""
    try:
        return canonicalize_version(Version(left)) == canonicalize_version(Version(right))
    except InvalidVersion:
        return False


# -- the bytes -----------------------------------------------------------------------------


def _receive(content: BinaryIO, max_size: int) -> _Received:
    """Size and digests of the stream, read once in constant memory."""
    hashers = {
        "md5_digest": hashlib.md5(usedforsecurity=False),
        "sha256_digest": hashlib.sha256(),
        "blake2_256_digest": hashlib.blake2b(digest_size=32),
    }
    size = 0
    content.seek(0)
    while chunk := content.read(_CHUNK):
        size += len(chunk)
        if size > max_size:
            raise UploadRejected(f"File too large. Limit for this index is {max_size} bytes.")
        for hasher in hashers.values():
            hasher.update(chunk)
    if size == 0:
        raise UploadRejected("Cannot upload an empty file.")
    return _Received(size, {key: hasher.hexdigest() for key, hasher in hashers.items()})


def _check_digests(supplied: dict[str, str], computed: dict[str, str]) -> None:
    if any(computed[key] != value for key, value in supplied.items()):
        raise UploadRejected(
            "The digest supplied does not match a digest calculated from the uploaded file."
        )


# -- the archive ---------------------------------------------------------------------------


def _metadata_member(filename: str, form: _Form, content: BinaryIO, size: int) -> _Member:
    """The core metadata inside the archive: a wheel's METADATA or an sdist's PKG-INFO."""
    content.seek(0)
    with _invalid_archive():
        if form.filetype == "bdist_wheel":
            return _wheel_metadata(filename, content, form, size)
        return _sdist_pkg_info(filename, content, form, size)


@contextmanager
def _invalid_archive() -> Iterator[None]:
    """Whatever a damaged archive makes zipfile or tarfile raise becomes one 400."""
    try:
        yield
    except _ARCHIVE_ERRORS:
        raise UploadRejected("Invalid distribution file.") from None


def _wheel_metadata(filename: str, content: BinaryIO, form: _Form, size: int) -> _Member:
    """`{name}-{version}.dist-info/METADATA`, in any spelling that names this release."""
    _check_zip_directory(content, filename)
    with zipfile.ZipFile(content) as archive:
        _check_zip_sizes(archive, filename, budget=max(size * _UNPACK_RATIO, _UNPACK_FLOOR))
        found = [path for path in archive.namelist() if _is_metadata_of(path, form)]
        if not found:
            expected = "-".join(filename.split("-", 2)[:2]) + ".dist-info/METADATA"
            raise UploadRejected(
                f"Wheel '{filename}' does not contain the required METADATA file: {expected}"
            )
        if len(found) > 1:
            raise UploadRejected(f"Wheel '{filename}' contains more than one METADATA file.")
        with archive.open(found[0]) as member:
            return _Member(found[0], _read_capped(member, found[0]))


def _check_zip_directory(content: BinaryIO, filename: str) -> None:
    """Refuse a central directory larger than any wheel's before zipfile reads it into memory.

    The size comes from the end record (or its zip64 form), exactly as zipfile reads it;
    where there is none, zipfile itself refuses the file.
    """
    end = content.seek(0, io.SEEK_END)
    start = max(0, end - _END_OF_DIRECTORY.size - 0xFFFF)
    content.seek(start)
    tail = content.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_OF_DIRECTORY.size:
        return
    _sig, _entries, _total, directory_size, _offset, _comment = _END_OF_DIRECTORY.unpack_from(
        tail, at
    )
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        _sig, _disk, record_offset, _disks = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        content.seek(record_offset)
        record = content.read(_ZIP64_END.size)
        if len(record) == _ZIP64_END.size and record[:4] == b"PK\x06\x06":
            directory_size = max(directory_size, _ZIP64_END.unpack(record)[8])
    if directory_size > _ZIP_DIRECTORY_LIMIT:
        raise UploadRejected(
            f"Invalid distribution file: the file list of '{filename}' takes more than "
            f"{_ZIP_DIRECTORY_LIMIT} bytes."
        )
    content.seek(0)


def _check_zip_sizes(archive: zipfile.ZipFile, filename: str, *, budget: int) -> None:
    """Refuse a zip bomb: too much in total, or one large member compressed absurdly well."""
    unpacked = 0
    for info in archive.infolist():
        unpacked += info.file_size
        if unpacked > budget:
            raise UploadRejected(
                f"Invalid distribution file: '{filename}' unpacks to more than {budget} bytes."
            )
        if info.file_size > _UNPACK_FLOOR and info.file_size > info.compress_size * _MEMBER_RATIO:
            raise UploadRejected(
                f"Invalid distribution file: '{info.filename}' in '{filename}' is compressed "
                f"more than {_MEMBER_RATIO}:1 ({info.compress_size} to {info.file_size} bytes)."
            )


def _is_metadata_of(path: str, form: _Form) -> bool:
    """A top-level `*.dist-info/METADATA` (exactly as installers read it) of this release."""
    directory, _, leaf = path.partition("/")
    stem, suffix = directory[: -len(".dist-info")], directory[-len(".dist-info") :]
    return leaf == "METADATA" and suffix == ".dist-info" and _names_release(stem, form)


def _names_release(stem: str, form: _Form) -> bool:
    """`{name}-{version}` spelled any way that normalizes to this project and release.

    Normalized versions never contain `-`, so the last one separates name and version.
    """
    name, _, stem_version = stem.rpartition("-")
    return canonicalize_name(name) == form.project and _same_version(stem_version, form.version)


def _sdist_pkg_info(filename: str, content: BinaryIO, form: _Form, size: int) -> _Member:
    """`PKG-INFO` in the one top-level `{name}-{version}/` directory, read without extracting."""
    with tarfile.open(fileobj=content, mode="r:gz") as archive:
        members = _tar_members(archive, filename, budget=max(size * _UNPACK_RATIO, _UNPACK_FLOOR))
        roots = {member.name.split("/", 1)[0] for member in members}
        root = roots.pop() if len(roots) == 1 else ""
        if not _names_release(root, form):
            expected = filename.removesuffix(".tar.gz")
            raise UploadRejected(
                f"Sdist '{filename}' must contain exactly one top-level directory, '{expected}/'."
            )
        path = f"{root}/PKG-INFO"
        pkg_info = next((m for m in members if m.name == path and m.isfile()), None)
        if pkg_info is None:
            raise UploadRejected(
                f"Sdist '{filename}' does not contain the required PKG-INFO file: {path}"
            )
        with archive.extractfile(pkg_info) as member:
            return _Member(path, _read_capped(member, path))


def _tar_members(archive: tarfile.TarFile, filename: str, *, budget: int) -> list[tarfile.TarInfo]:
    """All members, refusing before skipping past more data than `budget` (a gzip bomb)."""
    members = []
    unpacked = 0
    while (member := archive.next()) is not None:
        unpacked += tarfile.BLOCKSIZE + member.size  # a header is unpacked too
        if len(members) >= _MAX_MEMBERS:
            raise UploadRejected(
                f"Invalid distribution file: '{filename}' has more than {_MAX_MEMBERS} members."
            )
        if unpacked > budget:
            raise UploadRejected(
                f"Invalid distribution file: '{filename}' unpacks to more than {budget} bytes."
            )
        members.append(member)
    return members


def _read_capped(member: IO[bytes], path: str) -> bytes:
    """A metadata member's bytes; a huge one is an attack, not metadata."""
    data = member.read(_METADATA_LIMIT + 1)
    if len(data) > _METADATA_LIMIT:
        raise UploadRejected(f"{path} is larger than {_METADATA_LIMIT} bytes.")
    return data


# -- core metadata -------------------------------------------------------------------------


def _check_core_metadata(member: _Member, form: _Form) -> RawMetadata:
    """The file's own Name and Version must be the release the form names."""
    metadata, _unparsed = parse_email(member.data)
    name = metadata.get("name", "")
    if canonicalize_name(name) != form.project:
        raise UploadRejected(
            f"Name {name!r} in {member.path} does not match the uploaded name {form.name!r}."
        )
    version = metadata.get("version", "")
    if not _same_version(version, form.version):
        raise UploadRejected(
            f"Version {version!r} in {member.path} does not match "
            f"the uploaded version {form.version!r}."
        )
    return metadata


def _requires_python(value: str | None) -> str | None:
    """The form's Requires-Python or else the file's; installers must be able to parse it."""
    if value is None:
        return None
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise _invalid("Requires-Python", value, "Use a valid PEP 440 version specifier.") from None
    return value
