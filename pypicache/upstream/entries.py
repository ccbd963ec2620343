"""What an upstream page says: its parsed types, and the checks every name and entry passes."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import msgspec
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypicache.digests import is_sha256
from pypicache.errors import InvalidName, UpstreamUnavailable
from pypicache.filefacts import FileFacts
from pypicache.models import FILENAME_LENGTH, NAME_LENGTH, VERSION_LENGTH
from pypicache.names import normalize_project

if TYPE_CHECKING:
    from pypi_simple import DistributionPackage, ProjectPage

    from pypicache.ops.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamPage:
    name: str
    files: tuple[FileFacts, ...]
    versions: tuple[str, ...]
    serial: int | None
    etag: str | None
    status: str | None
    status_reason: str | None
    # Files whose upload-time is when this index first saw them: the upstream gave none.
    first_seen: frozenset[str] = frozenset()

    def seen_at(self, moment: datetime) -> UpstreamPage:
        """This page with ``moment`` as the upload-time of every file that has none.

        Client-side ``exclude-newer`` and cooldown rules need a time for every file;
        a static index (HTML only) gives none.
        """
        missing = frozenset(f.filename for f in self.files if f.upload_time is None)
        if not missing:
            return self
        files = tuple(
            msgspec.structs.replace(f, upload_time=moment) if f.upload_time is None else f
            for f in self.files
        )
        return replace(self, files=files, first_seen=self.first_seen | missing)


@dataclass(frozen=True)
class NotModified:
    """The upstream confirmed our stored copy (HTTP 304)."""

    serial: int | None


@dataclass
class UpstreamNames:
    """The upstream's project list, streamed: valid names, as (normalized, as listed) pairs,
    are read lazily from ``names``."""

    names: Iterator[tuple[str, str]]
    etag: str | None
    serial: int | None


class InvalidPage(UpstreamUnavailable):
    """The upstream answered 200 with something that is not a usable page for the project.

    Too big, undecodable, unparsable, another project's, or (see ``page_problem``) a
    page that would empty what we store: a captive portal, a broken mirror.
    """


# A serial must fit the BIGINT columns it is stored in (and JSON's 64-bit integers).
SERIAL_LIMIT = 2**63
_SERIAL_TEXT = re.compile(r"[0-9]{1,19}", re.ASCII)


def checked_serial(value: object) -> int | None:
    """An upstream's serial as we may store it: an integer in [0, 2**63), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value < SERIAL_LIMIT else None


def parse_serial(value: str | None) -> int | None:
    """A serial header's digits (``int`` alone would take ``-1``, ``1_0`` or Arabic digits)."""
    if value is None:
        return None
    value = value.strip(" \t")
    return checked_serial(int(value)) if _SERIAL_TEXT.fullmatch(value) else None


def page_problem(
    name: str, page: UpstreamPage, stored_files: Sequence[str], stored_serial: int | None
) -> str | None:
    """Why ``page`` cannot be the project's page while we store ``stored_files`` (None: it can).

    A captive portal, a login page or a broken mirror answers 200 too; taking its
    word would empty the project and delete its blobs.  A project really emptied
    or deleted upstream answers 404 (the changelog follower's removal path) or
    says it is quarantined (PEP 792).
    """
    if stored_serial is not None and page.serial is None:
        return f"the page has no serial, the stored page has serial {stored_serial}"
    if not stored_files or page.status == "quarantined":
        return None
    if not page.files:
        return f"the page lists no files, the stored page lists {len(stored_files)}"
    if any(_is_dist_of(name, f) for f in stored_files) and not any(
        _is_dist_of(name, f.filename) for f in page.files
    ):
        return f"none of the page's {len(page.files)} files is a distribution of {name}"
    return None


def _is_dist_of(name: str, filename: str) -> bool:
    if filename.endswith(".whl"):
        return wheel_project(filename) == name
    return sdist_project(filename) == name


def valid_names(names: Iterator[str], metrics: Metrics | None) -> Iterator[tuple[str, str]]:
    """(normalized, as listed) for the names of a project list that are project names at
    all; the others left out, counted and logged."""
    for name in names:
        if isinstance(name, str) and len(name) <= NAME_LENGTH:
            try:
                yield normalize_project(name), name
                continue
            except InvalidName:
                pass
        reject("name", "/simple/", name, "not a valid project name", metrics)


def valid_project_name(name: object) -> bool:
    """Whether an upstream's project name is a valid one (the name-format spec), in length."""
    if not isinstance(name, str) or len(name) > NAME_LENGTH:
        return False
    try:
        normalize_project(name)
    except InvalidName:
        return False
    return True


# Invalid entries already logged by this process: each once, and at most this many.
_LOG_ONCE_LIMIT = 10_000


_logged: set[tuple[str, str]] = set()


_logged_lock = threading.Lock()


def reject(reason: str, project: str, entry: object, why: str, metrics: Metrics | None) -> None:
    """Count an upstream entry left out; log it the first time this process meets it."""
    if metrics is not None:
        metrics.upstream_invalid_entries.labels(reason).inc()
    key = (project, repr(entry)[:200])
    with _logged_lock:
        if key in _logged or len(_logged) > _LOG_ONCE_LIMIT:
            return
        _logged.add(key)
        full = len(_logged) > _LOG_ONCE_LIMIT
    log.warning("upstream %s: left out %s: %s", project, key[1], why)
    if full:
        log.warning("upstream: more invalid entries are counted, no longer logged")


# Sdists and eggs whose names only the project prefix can check (legacy versions).
_LEGACY_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg")


def filename_problem(filename: object, project: str) -> str | None:
    """Why ``filename`` is not a wheel or sdist of ``project`` (None: it is one).

    Names that are paths (``/``, ``\\``, ``..``), hold control characters or
    belong to another project never reach the database, a URL or a log line.
    """
    if not isinstance(filename, str) or not filename:
        return "an empty file name"
    if len(filename) > FILENAME_LENGTH:
        return "a file name too long"
    if "/" in filename or "\\" in filename or ".." in filename:
        return "a file name that is a path"
    if not (filename.isascii() and filename.isprintable()) and any(
        unicodedata.category(c).startswith("C") for c in filename
    ):
        return "a file name with control characters"
    project = _canonical(project)
    if filename.endswith(".whl"):
        name = wheel_project(filename)
        if name is None:
            return "not a valid wheel file name"
        return None if name == project else f"a wheel of {name}, not {project}"
    if filename.endswith((".tar.gz", ".zip")) and sdist_project(filename) == project:
        return None  # else perhaps a legacy version: the name must still be the project's
    suffix = next((s for s in _LEGACY_SUFFIXES if filename.endswith(s)), None)
    if suffix is None:
        return "neither a wheel nor an sdist"
    stem = filename.removesuffix(suffix)
    for i, char in enumerate(stem):
        if char == "-" and stem[i + 1 :] and canonicalize_name(stem[:i]) == project:
            return None
    return f"not a distribution of {project}"


# The wheel spec's rules, as packaging's parse_wheel_filename applies them.
_WHEEL_NAME = re.compile(r"[\w._]+", re.UNICODE)
_BUILD_TAG = re.compile(r"\d+.*", re.ASCII)


def wheel_project(filename: str) -> str | None:
    """The normalized project of a valid wheel file name, None when the name is not valid.

    What ``parse_wheel_filename`` decides, at a fraction of its cost: a page of
    11,000 wheels repeats a few dozen versions and tag sets, so each is checked
    once; and a compressed tag set is checked without expanding it (512
    characters of tags expand to hundreds of thousands of tags).
    """
    if not filename.endswith(".whl"):
        return None
    stem = filename[:-4]
    dashes = stem.count("-")
    if dashes not in (4, 5):
        return None
    parts = stem.split("-", dashes - 2)
    if dashes == 5 and _BUILD_TAG.fullmatch(parts[2]) is None:
        return None
    if not (_valid_version(parts[1]) and _valid_tags(parts[-1])):
        return None
    return _wheel_name(parts[0])


def sdist_project(filename: str) -> str | None:
    """The normalized project of a valid sdist file name (``.tar.gz``, ``.zip``), None
    when the name is not valid: what ``parse_sdist_filename`` decides, with each version
    checked once (a big page's sdists and wheels share their versions)."""
    suffix = ".tar.gz" if filename.endswith(".tar.gz") else ".zip"
    if not filename.endswith(suffix):
        return None
    name, dash, version = filename[: -len(suffix)].rpartition("-")
    if not dash or not name or not _valid_version(version):
        return None
    return _canonical(name)


@lru_cache(maxsize=4096)
def _canonical(text: str) -> str:
    return canonicalize_name(text)


@lru_cache(maxsize=4096)
def _wheel_name(text: str) -> str | None:
    if "__" in text or _WHEEL_NAME.fullmatch(text) is None:
        return None
    return canonicalize_name(text)


@lru_cache(maxsize=4096)
def _valid_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


@lru_cache(maxsize=4096)
def _valid_tags(text: str) -> bool:
    """Three dash-separated components of non-empty dotted parts; interpreters identifiers."""
    components = [component.split(".") for component in text.split("-")]
    if len(components) != 3 or any("" in parts for parts in components):
        return False
    return all(interpreter.isidentifier() for interpreter in components[0])


def distinct_files(
    entries: Iterable[FileFacts | None], project: str, metrics: Metrics | None
) -> tuple[FileFacts, ...]:
    """The valid entries, each file name once: the first listed; later ones are left out.

    A page lists a file name once; one listing it twice would otherwise say two things
    about one file (and the files table holds one row per name).
    """
    files: dict[str, FileFacts] = {}
    for entry in entries:
        if entry is None:
            continue
        if entry.filename in files:
            reject("duplicate", project, entry.filename, "a file name listed twice", metrics)
            continue
        files[entry.filename] = entry
    return tuple(files.values())


def checked_page(
    name: str,
    page: ProjectPage,
    serial: int | None,
    etag: str | None,
    local: bool = False,
    metrics: Metrics | None = None,
    base_url: str | None = None,
) -> UpstreamPage:
    """``base_url``: the page's URL, which relative URLs on it are relative to."""
    if serial is None:
        serial = parse_serial(page.last_serial)
    entries = (
        checked_file(
            pkg,
            name,
            size=local_size(pkg.url) if local and pkg.size is None else pkg.size,
            metrics=metrics,
            base_url=base_url,
        )
        for pkg in page.packages
    )
    files = distinct_files(entries, name, metrics)
    status = page.status.value if page.status is not None else None
    return page_of(name, files, page.versions, serial, etag, status, page.status_reason)


def checked_file(
    pkg: DistributionPackage,
    project: str,
    *,
    size: int | None = None,
    sha256: str | None = None,
    metrics: Metrics | None = None,
    base_url: str | None = None,
) -> FileFacts | None:
    """The page entry as we keep it, or None (logged, counted) when it is not valid.

    A digest names a blob, so one from outside is taken only as 64 lower-case
    hex characters; a file name must be a distribution of the page's project.
    """
    problem = filename_problem(pkg.filename, project)
    if problem is not None:
        reject("filename", project, pkg.filename, problem, metrics)
        return None
    if sha256 is None:
        sha256 = pkg.digests.get("sha256")
    metadata_sha256 = (pkg.metadata_digests or {}).get("sha256")
    for digest, what in ((sha256, "sha256"), (metadata_sha256, "core-metadata sha256")):
        if digest is not None and not is_sha256(digest):
            why = f"its {what} {digest!r:.100} is not 64 lower-case hex characters"
            reject("digest", project, pkg.filename, why, metrics)
            return None
    upload_time = pkg.upload_time
    if upload_time is not None:
        upload_time = upload_time.astimezone(UTC).replace(tzinfo=None)
    url = pkg.url.split("#", 1)[0]
    provenance, why = checked_provenance(pkg.provenance_url, base_url or url)
    if why is not None:
        reject("provenance", project, pkg.filename, why, metrics)
    return FileFacts(
        filename=pkg.filename,
        version=storable_version(pkg.version),
        sha256=sha256,
        size=storable_size(size if size is not None else pkg.size),
        requires_python=upstream_text(pkg.requires_python),
        yanked=bool(pkg.is_yanked),
        yanked_reason=upstream_text(pkg.yanked_reason),
        upload_time=upload_time,
        has_metadata=bool(pkg.has_metadata),
        metadata_sha256=metadata_sha256,
        upstream_url=url,
        provenance=provenance,
    )


# A provenance URL longer than this is not one (PyPI's are under 200 characters).
PROVENANCE_URL_LIMIT = 2048
_URL_SCHEMES = ("http", "https", "file")


def checked_provenance(value: object, base_url: str) -> tuple[str | None, str | None]:
    """A file entry's ``provenance`` (PEP 740) as (absolute URL, None), or (None, why not).

    None is what most files have.  Anything but a URL of the upstream's kinds (http(s),
    or file on a local tree) is refused: text with spaces or control characters, a
    URL with credentials, another scheme.  Where it may lead is decided when it is
    fetched, by the URL policy, as for file URLs.
    """
    if value is None:
        return None, None
    if not isinstance(value, str) or not value:
        return None, f"a provenance {value!r:.100} that is not a URL"
    if len(value) > PROVENANCE_URL_LIMIT:
        return None, f"a provenance URL longer than {PROVENANCE_URL_LIMIT} characters"
    if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
        return None, f"a provenance URL {value!r:.100} with spaces or control characters"
    try:
        url = urljoin(base_url, value).split("#", 1)[0]
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        return None, f"a provenance {value!r:.100} that is not a URL"
    if parts.scheme not in _URL_SCHEMES:
        return None, f"a provenance URL {value!r:.100} that is not http(s)"
    if parts.scheme != "file" and not parts.hostname:
        return None, f"a provenance URL {value!r:.100} without a host"
    if parts.username is not None or parts.password is not None:
        return None, "a provenance URL with credentials in it"
    return url, None


# Free text from the upstream (yank reasons, requires-python) kept at most this long.
TEXT_LIMIT = 10_000


def upstream_text(value: object, limit: int = TEXT_LIMIT) -> str | None:
    """Upstream free text as we may store and show it: a string, no surrogates (which no
    database encoding takes) nor control characters, and bounded (None when empty)."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) <= limit and value.isascii() and value.isprintable():
        return value  # the common case: nothing to replace
    cleaned = "".join(
        "\ufffd" if unicodedata.category(c) in ("Cs", "Cc") and c not in "\t" else c
        for c in value[:limit]
    )
    return cleaned or None


def storable_version(value: object) -> str | None:
    """A version we can store: text without control characters that fits its column."""
    text = upstream_text(value, VERSION_LENGTH + 1)
    return text if text is not None and len(text) <= VERSION_LENGTH and text == value else None


def storable_size(value: object) -> int | None:
    """A size we can announce as Content-Length: a non-negative integer of sane magnitude."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        return None
    return value


def page_of(
    name: str,
    files: tuple[FileFacts, ...],
    listed: list[str] | None,
    serial: int | None,
    etag: str | None,
    status: str | None,
    reason: object,
) -> UpstreamPage:
    """The page every reader makes of what it read: its versions those listed (as we may
    store them) and its files', its status reason upstream text."""
    versions = {v for v in map(storable_version, listed or ()) if v is not None}
    versions.update(f.version for f in files if f.version)
    return UpstreamPage(name, files, tuple(versions), serial, etag, status, upstream_text(reason))


def local_path(url: str) -> Path:
    return Path(url2pathname(unquote(urlsplit(url).path)))


def local_size(url: str) -> int | None:
    if urlsplit(url).scheme != "file":
        return None
    try:
        return local_path(url).stat().st_size
    except OSError:
        return None
