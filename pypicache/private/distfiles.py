"""Validates an uploaded distribution file before anything is stored.

The checks, their order and their messages follow Warehouse's legacy upload endpoint
(standards §10, R80-R92), so twine and ``uv publish`` users read here what they would read
from the public index. Nothing is extracted: archives are only listed, and the one metadata
member is read with a size cap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import BinaryIO, NamedTuple

from packaging.metadata import RawMetadata, parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from pypicache.errors import InvalidName, UploadRejected
from pypicache.filefacts import UPLOADED, FileFacts
from pypicache.models import FILENAME_LENGTH, NAME_LENGTH, VERSION_LENGTH
from pypicache.names import normalize_project
from pypicache.private.archives import Member, metadata_member, same_version
from pypicache.private.attestations import checked_attestations, uploaded_document
from pypicache.upstream.provenance import InvalidProvenance

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
    # The PEP 740 provenance document built from the upload's attestations, if it had any.
    provenance: bytes | None = None

    def facts(self, uploaded_at: datetime) -> FileFacts:
        """What the project page says of the file once it is stored."""
        return FileFacts(
            filename=self.filename,
            version=self.version,
            sha256=self.sha256,
            size=self.size,
            requires_python=self.requires_python,
            yanked=False,
            yanked_reason=None,
            upload_time=uploaded_at,
            has_metadata=self.metadata is not None,
            metadata_sha256=self.metadata_sha256,
            upstream_url=None,
            provenance=UPLOADED if self.provenance is not None else None,
        )


@dataclass(frozen=True)
class UploadForm:
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


def validate_upload(
    fields: Mapping[str, Sequence[str]],
    filename: str,
    content: BinaryIO,
    *,
    max_size: int,
    attestations: str | None = None,
) -> ValidUpload:
    """Check an upload completely; raise UploadRejected at the first problem.

    `fields` holds every form field except the file parts; ``attestations`` is the
    form's PEP 740 attestations (twine ``--attestations``), kept as the file's provenance.
    """
    upload = _validate(_read_form(fields), filename, content, max_size)
    if attestations is None:
        return upload
    try:
        checked = checked_attestations(attestations, upload.filename, upload.sha256)
    except InvalidProvenance as exc:
        raise UploadRejected(f"Invalid attestations supplied during upload: {exc}") from None
    return replace(upload, provenance=uploaded_document(checked))


def validate_file(filename: str, content: BinaryIO, *, max_size: int) -> ValidUpload:
    """Check a file sent without twine's form fields (the admin page's upload).

    The same checks as `validate_upload`, with name, version and type read from
    the filename; the archive's metadata must then agree with them.
    """
    return _validate(_form_from_filename(filename), filename, content, max_size)


def _validate(form: UploadForm, filename: str, content: BinaryIO, max_size: int) -> ValidUpload:
    _check_lengths(filename, form)
    _check_filename(filename, form)
    received = _receive(content, max_size)
    _check_digests(form.digests, received.digests)
    member = metadata_member(filename, form, content, received.size)
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


def _read_form(fields: Mapping[str, Sequence[str]]) -> UploadForm:
    """The form's fields, in Warehouse's order of checks (R80-R82)."""
    _check_raw_fields(fields)
    if (_value(fields, "protocol_version") or "1") != "1":
        raise UploadRejected("Unknown protocol version.")
    filetype = _filetype(fields)
    name, project = _name(fields)
    version = _version(fields)
    if _value(fields, "metadata_version") is None:
        raise _invalid("Metadata-Version", "", "This field is required.")
    return UploadForm(
        name=name,
        project=project,
        version=version,
        filetype=filetype,
        digests=_digests(fields),
        requires_python=_value(fields, "requires_python"),
        summary=_value(fields, "summary"),
    )


def _form_from_filename(filename: str) -> UploadForm:
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
    return UploadForm(
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


def _check_lengths(filename: str, form: UploadForm) -> None:
    """What the database's columns hold: PostgreSQL refuses longer values (SQLite keeps them)."""
    if len(filename) > FILENAME_LENGTH:
        raise UploadRejected(f"Filename too long: use at most {FILENAME_LENGTH} characters.")
    if len(form.name) > NAME_LENGTH:
        raise _invalid("Name", form.name, f"Use at most {NAME_LENGTH} characters.")
    if len(form.version) > VERSION_LENGTH:
        raise _invalid("Version", form.version, f"Use at most {VERSION_LENGTH} characters.")


def _check_filename(filename: str, form: UploadForm) -> None:
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


def _check_wheel_filename(filename: str, form: UploadForm) -> None:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise UploadRejected(str(exc)) from None
    if name != form.project:
        raise UploadRejected(f"Start filename for {form.name!r} with {_escape(form.name) + '-'!r}.")
    _check_filename_version(str(version), form)


def _check_sdist_filename(filename: str, form: UploadForm) -> None:
    """PEP 625: `{escaped name}-{version}.tar.gz`, which PyPI now requires too."""
    prefix = _escape(form.name) + "-"
    if not filename.startswith(prefix):
        raise UploadRejected(f"Start filename for {form.name!r} with {prefix!r}.")
    _check_filename_version(filename[len(prefix) : -len(".tar.gz")], form)


def _check_filename_version(version: str, form: UploadForm) -> None:
    if not same_version(version, form.version):
        raise UploadRejected(f"Version in filename should be {form.version!r} not {version!r}.")


def _escape(name: str) -> str:
    """The name as filenames spell it (binary distribution format, PEP 625)."""
    return re.sub(r"[-_.]+", "_", name).lower()


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


# -- core metadata -------------------------------------------------------------------------


def _check_core_metadata(member: Member, form: UploadForm) -> RawMetadata:
    """The file's own Name and Version must be the release the form names."""
    metadata, _unparsed = parse_email(member.data)
    name = metadata.get("name", "")
    if canonicalize_name(name) != form.project:
        raise UploadRejected(
            f"Name {name!r} in {member.path} does not match the uploaded name {form.name!r}."
        )
    version = metadata.get("version", "")
    if not same_version(version, form.version):
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
