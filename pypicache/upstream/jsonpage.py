"""A PEP 691 JSON page, decoded into plain values, read into checked file facts; and the
checks of one entry and of a page's header, which the typed reader shares.

PyPI's biggest projects list 11,000 files.  Read through generic models (pydantic,
a URL join and a full wheel-name parse per file) a page cost about 50 µs a file,
many times the upstream's own answer time; read here, each value is checked once,
as it becomes a fact, and values that repeat (versions, tags) are checked once a page.
This reader takes any JSON value: a page whose values are not of the types the
simple API gives is read here, the careful way (see ``typedpage`` for the others).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypicache.digests import is_sha256
from pypicache.filefacts import FileFacts
from pypicache.upstream.entries import (
    InvalidPage,
    UpstreamPage,
    checked_provenance,
    checked_serial,
    distinct_files,
    filename_problem,
    page_of,
    parse_serial,
    reject,
    sdist_project,
    storable_size,
    storable_version,
    upstream_text,
)
from pypicache.upstream.entrymemo import MEMO_MIN_FILES, EntryMemo, entry_key

if TYPE_CHECKING:
    from pypicache.ops.metrics import Metrics

# PEP 792's statuses; any other value makes the page unusable, as an unknown API would.
STATUSES = frozenset({"active", "archived", "quarantined", "deprecated"})
# The simple API's major version we understand (PEP 629: a newer major is refused).
API_MAJOR = 1
# An absolute http(s) URL that ``urljoin`` would give back unchanged: no query, fragment,
# parameters, whitespace or backslash, which its parser would rewrite (an empty ";" goes).
_PLAIN_ABSOLUTE = re.compile(r"https?://[^/?#;\s\\]+(?:/[^?#;\s\\]*)?", re.ASCII)
# The characters pypi_simple lets a version read from a file name have.
_VERSION_TEXT = re.compile(r"[A-Za-z0-9_.!+-]+")
# "2024-01-02T03:04:05Z": a date, a time to the second and the zone.
_SHORTEST_ZULU = 20

# The big pages read lately, each entry's facts (see entrymemo).
memo = EntryMemo()

Entry = TypeVar("Entry")


def read_json_page(
    name: str,
    data: object,
    base_url: str,
    *,
    serial: int | None = None,
    etag: str | None = None,
    metrics: Metrics | None = None,
    memo: EntryMemo = memo,
) -> UpstreamPage:
    """The page ``data`` (decoded JSON) says ``name`` has; InvalidPage when it is no such page.

    A page of the wrong shape (no ``meta``, ``name`` or ``files``, an entry that is no
    object or lacks ``filename``, ``url`` or ``hashes``, an API version we do not
    speak, an unknown project status) is refused whole, as a broken or foreign page;
    an entry that is well-formed but unsafe (a path for a name, another project's
    file, a digest that is not one) is left out, counted and logged.
    """
    page = _object(data, "the page")
    meta = _object(page.get("meta"), "meta")
    project_status = page.get("project-status")
    status = _object(project_status, "project-status") if project_status is not None else {}
    state = check_header(name, meta.get("api-version"), page.get("name"), status.get("status"))
    entries = page.get("files")
    if not isinstance(entries, list):
        raise InvalidPage("the page's files are not a list")
    listed = page.get("versions")
    if listed is not None and not (
        isinstance(listed, list) and all(isinstance(v, str) for v in listed)
    ):
        raise InvalidPage("the page's versions are not a list of strings")
    if serial is None:
        serial = page_serial(meta.get("_last-serial"))
    files = read_entries(entries, name, base_url, metrics, memo, entry_key, _file)
    return page_of(name, files, listed, serial, etag, state, status.get("reason"))


def check_header(name: str, api_version: object, project: object, state: object) -> str | None:
    """The page's status, once its API version, project and status are ones we take."""
    if not isinstance(api_version, str):
        raise InvalidPage("the page has no meta.api-version")
    try:
        major = Version(api_version).major
    except InvalidVersion as exc:
        raise InvalidPage(f"meta.api-version {api_version!r:.50} is not a version") from exc
    if major != API_MAJOR:
        raise InvalidPage(f"simple API version {api_version!r:.50} is not one we speak")
    if not isinstance(project, str) or canonicalize_name(project) != name:
        raise InvalidPage(f"the page is for project {project!r:.100}, not {name!r}")
    if state is not None and (not isinstance(state, str) or state not in STATUSES):
        raise InvalidPage(f"unknown project status {state!r:.50}")
    return state


def page_serial(value: object) -> int | None:
    """``meta._last-serial`` as a serial we may store (a string of digits, or an integer)."""
    return parse_serial(value) if isinstance(value, str) else checked_serial(value)


def read_entries(
    entries: Sequence[Entry],
    name: str,
    base_url: str,
    metrics: Metrics | None,
    memo: EntryMemo,
    key_of: Callable[[Entry], Hashable | None],
    read: Callable[[Entry, str, str, Metrics | None], tuple[FileFacts | None, bool]],
    before: Mapping[Hashable, FileFacts] | None = None,
) -> tuple[FileFacts, ...]:
    """The page's files, each entry read with ``read``; a big page's entries as they
    were last time (``key_of``: a key made of every value an entry's facts are made of)
    give the facts they gave then (``before``: what the memo held, if already asked)."""
    if len(entries) < MEMO_MIN_FILES:
        found = (read(entry, name, base_url, metrics)[0] for entry in entries)
        return distinct_files(found, name, metrics)
    if before is None:
        before = memo.get(name, base_url)
    now: dict[Hashable, FileFacts] = {}

    def each() -> Iterator[FileFacts | None]:
        for entry in entries:
            key = key_of(entry)
            facts = before.get(key) if key is not None else None
            if facts is None:
                facts, whole = read(entry, name, base_url, metrics)
                if facts is None or not whole or key is None:
                    yield facts
                    continue
            now[key] = facts
            yield facts

    files = distinct_files(each(), name, metrics)
    memo.put(name, base_url, now)
    return files


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPage(f"{what} is not a JSON object")
    return value


def _file(
    entry: object, project: str, base_url: str, metrics: Metrics | None
) -> tuple[FileFacts | None, bool]:
    entry = _object(entry, "a file entry")
    filename = entry.get("filename")
    url = entry.get("url")
    hashes = entry.get("hashes")
    if not (isinstance(filename, str) and isinstance(url, str) and isinstance(hashes, dict)):
        raise InvalidPage(f"a file entry without filename, url and hashes: {entry!r:.200}")
    # PEP 714: the old key only where the new one is missing.
    metadata = (
        entry["core-metadata"] if "core-metadata" in entry else entry.get("data-dist-info-metadata")
    )
    sha256 = hashes.get("sha256")
    metadata_sha256 = metadata.get("sha256") if isinstance(metadata, dict) else None
    return entry_facts(
        project,
        base_url,
        metrics,
        filename,
        url,
        sha256,
        metadata is True or isinstance(metadata, dict),
        metadata_sha256,
        digest_problem(sha256, metadata_sha256),
        entry.get("size"),
        entry.get("requires-python"),
        entry.get("yanked", False),
        entry.get("upload-time"),
        entry.get("provenance"),
    )


def entry_facts(
    project: str,
    base_url: str,
    metrics: Metrics | None,
    filename: str,
    url: str,
    sha256: object,
    has_metadata: bool,
    metadata_sha256: object,
    bad_digest: str | None,
    size: object,
    requires_python: object,
    yanked: object,
    uploaded: object,
    provenance: object,
) -> tuple[FileFacts | None, bool]:
    """The entry's facts (None: left out), and whether it was taken whole.

    ``bad_digest``: what ``digest_problem`` says of the entry's digests (typed entries'
    digests are checked as they are decoded).
    """
    problem = filename_problem(filename, project)
    if problem is not None:
        reject("filename", project, filename, problem, metrics)
        return None, False
    if bad_digest is not None:
        reject("digest", project, filename, bad_digest, metrics)
        return None, False
    provenance, why = checked_provenance(provenance, base_url)
    if why is not None:
        reject("provenance", project, filename, why, metrics)
    facts = FileFacts(  # by position, FileFacts' field order: a tenth faster
        filename,
        dist_version(filename, project),
        sha256,  # type: ignore[arg-type]  # checked above
        storable_size(size),
        upstream_text(requires_python),
        isinstance(yanked, str) or yanked is True,
        upstream_text(yanked),
        upload_time(uploaded),
        has_metadata,
        metadata_sha256,  # type: ignore[arg-type]  # checked above
        absolute_url(base_url, url).split("#", 1)[0],
        provenance,
    )
    return facts, why is None


def digest_problem(sha256: object, metadata_sha256: object) -> str | None:
    """Why the entry's digests cannot name blobs (None: they can, or are missing)."""
    bad = (
        ("sha256", sha256)
        if sha256 is not None and not is_sha256(sha256)
        else ("core-metadata sha256", metadata_sha256)
        if metadata_sha256 is not None and not is_sha256(metadata_sha256)
        else None
    )
    if bad is None:
        return None
    return f"its {bad[0]} {bad[1]!r:.100} is not 64 lower-case hex characters"


def dist_version(filename: str, project: str) -> str | None:
    """The version a distribution's file name gives, spelled as in the name.

    ``filename`` is one ``filename_problem`` accepted for ``project`` (a normalized
    name), so a wheel's name has its version in the second field; other names are read
    with the project as the hint.
    """
    if filename.endswith(".whl"):
        version: str | None = filename.split("-", 2)[1]
    else:
        version = _sdist_version(filename, project)
    return _stored_version(version) if version is not None else None


def _sdist_version(filename: str, project: str) -> str | None:
    """An sdist's version; pypi_simple's parser only for names it could read another way
    than at the last dash: legacy formats, local versions ("1.0+x.win" reads as "1.0" of
    a built distribution), names outside ASCII.  Importing it loads its HTML and JSON
    parsers too (bs4, lxml, pydantic: 16 MB), which a process reading JSON never needs."""
    if filename.isascii() and sdist_project(filename) == project:
        stem = filename.removesuffix(".tar.gz") if filename.endswith(".tar.gz") else filename
        version = stem.removesuffix(".zip").rpartition("-")[2]
        if "+" not in version:
            return version
    from pypi_simple import UnparsableFilenameError, parse_filename

    try:
        return parse_filename(filename, project)[1]
    except UnparsableFilenameError:
        return None


@lru_cache(maxsize=4096)
def _stored_version(text: str) -> str | None:
    """A file name's version as stored: a big page repeats each one dozens of times."""
    return storable_version(text) if _VERSION_TEXT.fullmatch(text) else None


def upload_time(value: object) -> datetime | None:
    """An ISO 8601 upload time as naive UTC (a time without a zone is taken as UTC)."""
    if not isinstance(value, str):
        return None
    if value.endswith("Z") and len(value) >= _SHORTEST_ZULU and value[10] == "T":
        # PyPI's spelling, read as the naive time it names without converting zones
        # (a fifth of the cost); anything the fast reading would not take exactly
        # as the full one does goes the full way.
        try:
            naive = datetime.fromisoformat(value[:-1])
        except ValueError:
            pass
        else:
            if naive.tzinfo is None:
                return naive
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def absolute_url(base_url: str, url: str) -> str:
    """``urljoin(base_url, url)``, without its cost for the absolute URLs big indexes give."""
    if _PLAIN_ABSOLUTE.fullmatch(url):
        return url
    return urljoin(base_url, url)
