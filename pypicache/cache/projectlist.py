"""The /simple/ project list: pre-rendered to files, merged from the upstream's list and ours.

PyPI's list has hundreds of thousands of names, so nothing here holds it in
memory: the upstream list is streamed into a text file, and the two
renderings are streamed from that file to disk and served from there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sqlalchemy import func, select

from pypicache.cache.rendering import API_VERSION, GZIP_LEVEL
from pypicache.db import Database
from pypicache.errors import InvalidName, UpstreamUnavailable
from pypicache.models import Project
from pypicache.names import normalize_project
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.entries import NotModified

log = logging.getLogger(__name__)

UPSTREAM_NAMES = "upstream-projects.txt"
UPSTREAM_META = "upstream-projects.json"
RETRY_AFTER_ERROR = 60.0


@dataclass(frozen=True)
class ProjectListFiles:
    """The two renderings on disk, each beside its gzip-encoded copy (``path + ".gz"``)."""

    html_path: Path
    html_etag: str
    json_path: Path
    json_etag: str
    serial: int | None

    def rendering(self, as_json: bool, gzipped: bool) -> tuple[Path, str]:
        """The file and ETag of one rendering; the encoded copy has an ETag of its own."""
        path, etag = (
            (self.json_path, self.json_etag) if as_json else (self.html_path, self.html_etag)
        )
        return (gzipped_path(path), etag[:-1] + '-gzip"') if gzipped else (path, etag)


def gzipped_path(path: Path) -> Path:
    return path.with_name(path.name + ".gz")


class LocalProjects(Protocol):
    """The projects this index holds, cached or private."""

    def fingerprint(self) -> object:
        """Changes whenever a project is added or removed; cheap enough for every request."""

    def names(self) -> Iterable[tuple[str, str]]:
        """(normalized name, display name) of each project."""


class DatabaseProjects:
    """The projects the database holds."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def fingerprint(self) -> tuple[int, int | None]:
        with self._database.unit_of_work() as db:
            count, last = db.execute(select(func.count(Project.id), func.max(Project.id))).one()
            return count, last

    def names(self) -> Iterator[tuple[str, str]]:
        with self._database.unit_of_work() as db:
            rows = db.execute(select(Project.name, Project.display_name).order_by(Project.name))
            yield from rows


class ProjectList:
    def __init__(
        self,
        directory: Path,
        upstream: UpstreamClient | None,
        local: LocalProjects,
        ttl: float,
    ) -> None:
        self._dir = directory
        self._upstream = upstream
        self._local = local
        self._ttl = ttl
        self._lock = threading.Lock()
        self._next_upstream_check = 0.0
        self._current: ProjectListFiles | None = None
        self._rendered_from: tuple[Any, str | None] | None = None

    def current(self) -> ProjectListFiles:
        """The rendered list, rebuilt when our projects or the upstream's list changed."""
        with self._lock:
            upstream_meta = self._refresh_upstream()
            source = (self._local.fingerprint(), upstream_meta.get("etag"))
            if self._current is None or source != self._rendered_from:
                self._current = self._render(upstream_meta.get("serial"))
                self._rendered_from = source
            return self._current

    def open(self, as_json: bool, gzipped: bool = False) -> tuple[str, int | None, BinaryIO]:
        """The ETag, the serial and an open handle of the rendering asked for."""
        while True:
            files = self.current()
            path, etag = files.rendering(as_json, gzipped)
            try:
                if gzipped and not path.exists():
                    self._encode(files.rendering(as_json, False)[0])
                return etag, files.serial, path.open("rb")
            except FileNotFoundError:
                continue  # re-rendered meanwhile; take the new one

    def _encode(self, plain: Path) -> None:
        """Write the gzip-encoded copy of a rendering, once, when a client first wants it.

        Not when rendering: encoding both renderings of a 200,000-name list would add
        a quarter of a second to the first request of every client, encoding or not.
        """
        with self._lock:
            target = gzipped_path(plain)
            if not target.exists():
                os.replace(_gzip_temp(self._dir, plain), target)

    # -- the upstream's list ---------------------------------------------------------------

    def _refresh_upstream(self) -> dict[str, Any]:
        meta_path = self._dir / UPSTREAM_META
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if self._upstream is None or time.monotonic() < self._next_upstream_check:
            return meta
        try:
            result = self._upstream.project_list(meta.get("etag"))
            if not isinstance(result, NotModified):
                temp, _, count = _write_temp(self._dir, _name_lines(result.names))
                os.replace(temp, self._dir / UPSTREAM_NAMES)
                meta = {"etag": result.etag or f"fetched-{time.time()}", "serial": result.serial}
                temp, _, _ = _write_temp(self._dir, [json.dumps(meta)])
                os.replace(temp, meta_path)
                log.info("upstream project list refreshed: %d names", count)
            self._next_upstream_check = time.monotonic() + self._ttl
        except UpstreamUnavailable as exc:
            log.warning("upstream project list unavailable, using the last one: %s", exc)
            self._next_upstream_check = time.monotonic() + min(self._ttl, RETRY_AFTER_ERROR)
        return meta

    def upstream_names_among(self, names: Collection[str]) -> set[str]:
        """Which of the normalized ``names`` the upstream's list holds (streamed, not loaded).

        The private names are never sent anywhere: asking the upstream about them
        would tell it what we are shadowing.
        """
        if not names:
            return set()
        with self._lock:
            self._refresh_upstream()
        return {name for name, _ in self._upstream_names() if name in names}

    def _upstream_names(self) -> Iterator[tuple[str, str]]:
        path = self._dir / UPSTREAM_NAMES
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                name, _, display = line.rstrip("\n").partition("\t")
                yield name, display

    # -- rendering -------------------------------------------------------------------------

    def _render(self, serial: int | None) -> ProjectListFiles:
        html_path, html_etag = self._render_one(".html", _html_lines(self._merged()))
        json_path, json_etag = self._render_one(".json", _json_lines(self._merged(), serial))
        current = {html_path, json_path, gzipped_path(html_path), gzipped_path(json_path)}
        for old in self._dir.glob("projects-*"):
            if old not in current:
                old.unlink(missing_ok=True)  # open handles keep reading the old bytes
        return ProjectListFiles(html_path, html_etag, json_path, json_etag, serial)

    def _render_one(self, suffix: str, lines: Iterable[str]) -> tuple[Path, str]:
        temp, digest, _ = _write_temp(self._dir, lines)
        etag = digest[:40]
        final = self._dir / f"projects-{etag}{suffix}"
        os.replace(temp, final)
        return final, f'"{etag}"'

    def _merged(self) -> Iterator[tuple[str, str]]:
        """(normalized name, display name) of every valid project name, ours after theirs.

        The upstream's names were checked when ``_name_lines`` wrote them; the
        database's are checked here.
        """
        local = dict(_valid(self._local.names()))
        for name, display in self._upstream_names():
            local.pop(name, None)
            yield name, display
        yield from sorted(local.items())


def _valid(projects: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Only project names, paired with their normalized form, whatever the file held.

    The list links to ``<normalized>/``; a name that is no project name (markup,
    ``../``, a URL) is left out rather than linked to.
    """
    for _name, display in projects:
        try:
            yield normalize_project(display), display
        except InvalidName:
            continue


def _name_lines(names: Iterable[str]) -> Iterator[str]:
    """The upstream's names as ``normalized<TAB>display`` lines; no project name, no line."""
    for name, display in _valid(("", text) for text in names if isinstance(text, str)):
        yield f"{name}\t{display}\n"


def _html_lines(projects: Iterable[tuple[str, str]]) -> Iterator[str]:
    yield (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
    )
    for name, display in projects:
        yield f'    <a href="{escape(name, quote=True)}/">{escape(display, quote=True)}</a>\n'
    yield "  </body>\n</html>\n"


def _json_lines(projects: Iterable[tuple[str, str]], serial: int | None) -> Iterator[str]:
    meta: dict[str, Any] = {"api-version": API_VERSION}
    if serial is not None:
        meta["_last-serial"] = serial
    yield '{"meta":' + json.dumps(meta, sort_keys=True, separators=(",", ":")) + ',"projects":['
    separator = ""
    for _name, display in projects:
        yield separator + json.dumps({"name": display}, ensure_ascii=False)
        separator = ","
    yield "]}"


def _gzip_temp(directory: Path, source: Path) -> Path:
    """A gzip-encoded copy of ``source`` in a new temp file (deterministic: no time in it)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as raw, source.open("rb") as handle:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
                while chunk := handle.read(1 << 20):
                    out.write(chunk)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _write_temp(directory: Path, lines: Iterable[str]) -> tuple[Path, str, int]:
    """Write ``lines`` to a new temp file in ``directory``; return it, its sha256, the count.

    Callers rename the file into place, so readers never see a partial list.
    """
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    digest = hashlib.sha256()
    count = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            buffer: list[bytes] = []
            for line in lines:
                data = line.encode("utf-8")
                digest.update(data)
                buffer.append(data)
                count += 1
                if len(buffer) >= 4096:
                    handle.write(b"".join(buffer))
                    buffer.clear()
            handle.write(b"".join(buffer))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), digest.hexdigest(), count
