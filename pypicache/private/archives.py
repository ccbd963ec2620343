"""Reading an uploaded archive safely: its one core metadata member, within bomb limits."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, BinaryIO, NamedTuple

from packaging.utils import (
    canonicalize_name,
    canonicalize_version,
)
from packaging.version import InvalidVersion, Version

from pypicache.errors import UploadRejected

if TYPE_CHECKING:
    from pypicache.private.distfiles import UploadForm

_METADATA_LIMIT = 10 << 20  # no real METADATA / PKG-INFO comes near this; bombs do


_ZIP64_LOCATOR = struct.Struct("<4sLQL")


_ZIP64_END = struct.Struct("<4sQ2H2L4Q")


def same_version(left: str, right: str) -> bool:
    """Equal as releases: `1.0` and `1.0.0` are one release (R88); invalid never matches."""
    try:
        return canonicalize_version(Version(left)) == canonicalize_version(Version(right))
    except InvalidVersion:
        return False


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


class Member(NamedTuple):
    path: str
    data: bytes


def metadata_member(filename: str, form: UploadForm, content: BinaryIO, size: int) -> Member:
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


def _wheel_metadata(filename: str, content: BinaryIO, form: UploadForm, size: int) -> Member:
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
            return Member(found[0], _read_capped(member, found[0]))


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


def _is_metadata_of(path: str, form: UploadForm) -> bool:
    """A top-level `*.dist-info/METADATA` (exactly as installers read it) of this release."""
    directory, _, leaf = path.partition("/")
    stem, suffix = directory[: -len(".dist-info")], directory[-len(".dist-info") :]
    return leaf == "METADATA" and suffix == ".dist-info" and _names_release(stem, form)


def _names_release(stem: str, form: UploadForm) -> bool:
    """`{name}-{version}` spelled any way that normalizes to this project and release.

    Normalized versions never contain `-`, so the last one separates name and version.
    """
    name, _, stem_version = stem.rpartition("-")
    return canonicalize_name(name) == form.project and same_version(stem_version, form.version)


def _sdist_pkg_info(filename: str, content: BinaryIO, form: UploadForm, size: int) -> Member:
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
            return Member(path, _read_capped(member, path))


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
