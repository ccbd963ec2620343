"""Builders for small, real distributions (wheels and sdists) made in memory for tests."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import random
import re
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from packaging.version import InvalidVersion, Version

# Fixed timestamps make the same inputs give byte-identical archives (and so the same sha256),
# which lets tests compare digests across runs and across the cache and the fake upstream.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_TAR_MTIME = 315532800  # 1980-01-01T00:00:00Z

# Members larger than this are stored, not deflated: deflating hundreds of MB of random
# bytes would take far longer than the benchmarks that need such files are allowed to.
_STORE_ABOVE = 1 << 20


@dataclass(frozen=True)
class Dist:
    """A built distribution file plus the facts an index advertises about it."""

    filename: str
    content: bytes
    metadata: bytes | None
    name: str
    version: str
    requires_python: str | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def size(self) -> int:
        return len(self.content)

    @cached_property
    def metadata_sha256(self) -> str | None:
        """Digest of the exact METADATA bytes, as PEP 658 `core-metadata` advertises it."""
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()

    def write(self, directory: Path | str) -> Path:
        """Write the file into `directory` (e.g. for twine, which uploads from disk)."""
        path = Path(directory) / self.filename
        path.write_bytes(self.content)
        return path


def escape_name(name: str) -> str:
    """Project name as it appears in wheel and sdist filenames (the binary distribution spec)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def normalize_version(version: str) -> str:
    """PEP 440 normal form where possible; filenames must not contain `-` in the version."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return version.replace("-", "_")


def _metadata(
    name: str,
    version: str,
    requires_dist: Iterable[str],
    requires_python: str | None,
    description: str = "",
) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: Test distribution {name}",
    ]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Requires-Dist: {req}" for req in requires_dist)
    if description:
        lines.append("Description-Content-Type: text/markdown")
    return ("\n".join(lines) + "\n\n" + description).encode()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _zip_member(arcname: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
    info.compress_type = compress_type
    info.create_system = 3  # Unix, so external_attr carries the mode on every platform
    info.external_attr = 0o644 << 16
    return info


def _build_wheel(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str],
    requires_python: str | None,
    extra_files: dict[str, bytes] | None,
    build_tag: str | int | None,
    compress: bool,
    tag: str = "py3-none-any",
    description: str = "",
) -> Dist:
    escaped = escape_name(name)
    version = normalize_version(version)
    distinfo = f"{escaped}-{version}.dist-info"
    metadata = _metadata(name, version, requires_dist, requires_python, description)
    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: pypicache-tests",
        f"Root-Is-Purelib: {'true' if tag.endswith('-none-any') else 'false'}",
        f"Tag: {tag}",
    ]
    if build_tag is not None:
        wheel_lines.append(f"Build: {build_tag}")

    members: list[tuple[str, bytes]] = [
        (f"{escaped}/__init__.py", f'__version__ = "{version}"\n'.encode()),
    ]
    members.extend(sorted((extra_files or {}).items()))
    members.append((f"{distinfo}/METADATA", metadata))
    members.append((f"{distinfo}/WHEEL", ("\n".join(wheel_lines) + "\n").encode()))
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members)
    members.append((f"{distinfo}/RECORD", (record + f"{distinfo}/RECORD,,\n").encode()))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members:
            deflate = compress and len(data) <= _STORE_ABOVE
            method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            archive.writestr(_zip_member(path, method), data)

    build = f"-{build_tag}" if build_tag is not None else ""
    return Dist(
        filename=f"{escaped}-{version}{build}-{tag}.whl",
        content=buffer.getvalue(),
        metadata=metadata,
        name=name,
        version=version,
        requires_python=requires_python,
    )


def make_wheel(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    build_tag: str | int | None = None,
    tag: str = "py3-none-any",
    description: str = "",
) -> Dist:
    """A wheel that pip and uv can really install: pure Python, unless ``tag`` says otherwise.

    Another ``tag`` (``cp39-cp39-manylinux_2_17_x86_64``) makes a wheel only that target
    selects; its contents stay pure Python.  ``description`` is METADATA's body (a README).
    """
    return _build_wheel(
        name,
        version,
        requires_dist=requires_dist,
        requires_python=requires_python,
        extra_files=extra_files,
        build_tag=build_tag,
        compress=True,
        tag=tag,
        description=description,
    )


def make_large_wheel(name: str, version: str, size_bytes: int, *, seed: int = 0) -> Dist:
    """A valid wheel of exactly `size_bytes` bytes, padded with random-looking data.

    Made for throughput benchmarks: every member is stored uncompressed so the archive's size
    is a linear function of the payload length and we can solve for it instead of retrying.
    """
    block = random.Random(seed).randbytes(1 << 20)  # filler, not a secret

    def payload(n: int) -> bytes:
        whole, rest = divmod(n, len(block))
        return block * whole + block[:rest]

    def build(n: int) -> Dist:
        return _build_wheel(
            name,
            version,
            requires_dist=(),
            requires_python=None,
            extra_files={f"{escape_name(name)}/payload.bin": payload(n)},
            build_tag=None,
            compress=False,
        )

    overhead = build(0).size  # RECORD then says ",0": one digit for the payload size
    if size_bytes < overhead:
        raise ValueError(f"a wheel needs at least {overhead} bytes")
    for digits in range(1, 20):
        n = size_bytes - overhead - (digits - 1)
        if n >= 0 and len(str(n)) == digits:
            dist = build(n)
            if dist.size == size_bytes:
                return dist
    raise AssertionError(f"could not build a wheel of exactly {size_bytes} bytes")


def make_sdist(
    name: str,
    version: str,
    *,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    description: str = "",
) -> Dist:
    """A minimal setuptools sdist (`.tar.gz`), for upload tests; not meant to be built."""
    escaped = escape_name(name)
    version = normalize_version(version)
    root = f"{escaped}-{version}"
    requires = list(requires_dist)
    pkg_info = _metadata(name, version, requires, requires_python, description)
    pyproject = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f'name = "{name}"',
        f'version = "{version}"',
    ]
    if requires_python:
        pyproject.append(f'requires-python = "{requires_python}"')
    pyproject.append("dependencies = [" + ", ".join(f'"{req}"' for req in requires) + "]")
    members: dict[str, bytes] = {
        "PKG-INFO": pkg_info,
        "pyproject.toml": ("\n".join(pyproject) + "\n").encode(),
        f"{escaped}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        **(extra_files or {}),
    }

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    # mtime=0 and an empty name keep the gzip header free of the time and the temp name.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return Dist(
        filename=f"{root}.tar.gz",
        content=compressed.getvalue(),
        metadata=None,
        name=name,
        version=version,
        requires_python=requires_python,
    )


def noise(size: int) -> bytes:
    """Incompressible bytes, so a wheel really is about ``size`` bytes long."""
    return random.Random(size).randbytes(size)
