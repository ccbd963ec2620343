"""The /simple/ project list: pre-rendered to files, merged from the upstreams' lists and ours.

PyPI's list has hundreds of thousands of names, so nothing here holds it in
memory: each upstream list is streamed into a text file, and the two
renderings are streamed from the first one's file to disk and served from
there (the other upstreams' lists, and ours, are merged in from memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from isal import igzip
from sqlalchemy import func, select

from pypicache.cache import changes
from pypicache.cache.rendering import API_VERSION, GZIP_LEVEL
from pypicache.db import Database
from pypicache.errors import InvalidName, UpstreamUnavailable
from pypicache.models import Project
from pypicache.names import normalize_project
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.entries import NotModified

log = logging.getLogger(__name__)

UPSTREAM_NAMES = "upstream-projects-{}.txt"
UPSTREAM_META = "upstream-projects-{}.json"
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

    def serials(self) -> dict[str, int]:
        """This index's serial of each name that changed here (the others have 0)."""


class DatabaseProjects:
    """The projects the database holds: of every source, or of some (``sources``)."""

    def __init__(self, database: Database, sources: Collection[str] | None = None) -> None:
        self._database = database
        self._where = () if sources is None else (Project.source.in_(sorted(sources)),)

    def fingerprint(self) -> tuple[int, int | None, int]:
        with self._database.unit_of_work() as db:
            count, last = db.execute(
                select(func.count(Project.id), func.max(Project.id)).where(*self._where)
            ).one()
            return count, last, changes.last_serial(db)

    def serials(self) -> dict[str, int]:
        with self._database.unit_of_work() as db:
            return changes.serials(db)

    def names(self) -> Iterator[tuple[str, str]]:
        with self._database.unit_of_work() as db:
            rows = db.execute(
                select(Project.name, Project.display_name)
                .where(*self._where)
                .order_by(Project.name)
            )
            yield from rows


class ProjectList:
    def __init__(
        self,
        directory: Path,
        upstreams: Sequence[tuple[str, UpstreamClient | None]],
        local: LocalProjects,
        ttl: float,
    ) -> None:
        """``upstreams``: (name, client) in priority order; the first one's serial is the
        list's."""
        self._dir = directory
        self._upstreams = [(name, client) for name, client in upstreams]
        self._local = local
        self._ttl = ttl
        self._lock = threading.Lock()
        self._next_upstream_check = {name: 0.0 for name, _ in self._upstreams}
        self._current: ProjectListFiles | None = None
        self._rendered_from: tuple[Any, ...] | None = None

    def current(self) -> ProjectListFiles:
        """The rendered list, rebuilt when our projects or an upstream's list changed."""
        with self._lock:
            self._dir.mkdir(parents=True, exist_ok=True)
            metas = self._refresh_upstreams()
            source = (self._local.fingerprint(), *(meta.get("etag") for meta in metas))
            if self._current is None or source != self._rendered_from:
                self._current = self._render()
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

    def _refresh_upstreams(self) -> list[dict[str, Any]]:
        return [self._refresh_upstream(name, client) for name, client in self._upstreams]

    def _refresh_upstream(self, upstream: str, client: UpstreamClient | None) -> dict[str, Any]:
        meta_path = self._dir / UPSTREAM_META.format(upstream)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if client is None or time.monotonic() < self._next_upstream_check[upstream]:
            return meta
        try:
            result = client.project_list(meta.get("etag"))
            if not isinstance(result, NotModified):
                names = _TempFile(self._dir)
                count = names.write_all(f"{name}\t{display}\n" for name, display in result.names)
                os.replace(names.close(), self._dir / UPSTREAM_NAMES.format(upstream))
                meta = {"etag": result.etag or f"fetched-{time.time()}", "serial": result.serial}
                meta_file = _TempFile(self._dir)
                meta_file.write_all([json.dumps(meta)])
                os.replace(meta_file.close(), meta_path)
                log.info("project list of the upstream %s refreshed: %d names", upstream, count)
            self._next_upstream_check[upstream] = time.monotonic() + self._ttl
        except UpstreamUnavailable as exc:
            log.warning(
                "project list of the upstream %s unavailable, using the last one: %s", upstream, exc
            )
            self._next_upstream_check[upstream] = time.monotonic() + min(
                self._ttl, RETRY_AFTER_ERROR
            )
        return meta

    def upstream_names_among(self, names: Collection[str]) -> set[str]:
        """Which of the normalized ``names`` an upstream's list holds (streamed, not loaded).

        The private names are never sent anywhere: asking the upstream about them
        would tell it what we are shadowing.
        """
        if not names:
            return set()
        with self._lock:
            self._refresh_upstreams()
        return {
            name
            for upstream, _ in self._upstreams
            for name, _ in self._upstream_names(upstream)
            if name in names
        }

    def _upstream_names(self, upstream: str) -> Iterator[tuple[str, str]]:
        path = self._dir / UPSTREAM_NAMES.format(upstream)
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                name, _, display = line.rstrip("\n").partition("\t")
                yield name, display

    # -- rendering -------------------------------------------------------------------------

    def _render(self) -> ProjectListFiles:
        """Both renderings in one pass over the merged names (hundreds of thousands).

        Each JSON entry carries this index's serial of the name (0: never changed
        here), and the list the newest of them: what a mirror such as bandersnatch
        reads to learn what to fetch.
        """
        serials = self._local.serials()
        serial = max(serials.values(), default=0)
        html, json_file = _TempFile(self._dir), _TempFile(self._dir)
        try:
            html.write(_HTML_HEAD)
            json_file.write(_json_head(serial))
            separator = ""
            for name, display in self._merged():
                html.write(_html_line(name, display))
                json_file.write(separator + _json_item(display, serials.get(name, 0)))
                separator = ","
            html.write(_HTML_TAIL)
            json_file.write("]}")
        except BaseException:
            html.discard()
            json_file.discard()
            raise
        html_path, html_etag = self._place(html, ".html")
        json_path, json_etag = self._place(json_file, ".json")
        current = {html_path, json_path, gzipped_path(html_path), gzipped_path(json_path)}
        for old in self._dir.glob("projects-*"):
            if old not in current:
                old.unlink(missing_ok=True)  # open handles keep reading the old bytes
        return ProjectListFiles(html_path, html_etag, json_path, json_etag, serial)

    def _place(self, rendering: _TempFile, suffix: str) -> tuple[Path, str]:
        """Move a finished rendering into place under its digest; its path and ETag."""
        etag = rendering.digest.hexdigest()[:40]
        final = self._dir / f"projects-{etag}{suffix}"
        os.replace(rendering.close(), final)
        return final, f'"{etag}"'

    def _merged(self) -> Iterator[tuple[str, str]]:
        """(normalized name, display name) of every valid project name: the first
        upstream's, then the others' and ours.

        The upstreams' names were checked before they were written to their files; the
        database's are checked here.
        """
        if not self._upstreams:
            yield from sorted(dict(_valid(self._local.names())).items())
            return
        first, *others = (name for name, _ in self._upstreams)
        rest: dict[str, str] = {}
        for upstream in others:
            for name, display in self._upstream_names(upstream):
                rest.setdefault(name, display)
        for name, display in _valid(self._local.names()):
            rest.setdefault(name, display)
        for name, display in self._upstream_names(first):
            rest.pop(name, None)
            yield name, display
        yield from sorted(rest.items())


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


# What a valid project name is made of: nothing that HTML or JSON would need escaped.
_PLAIN = re.compile(r"[A-Za-z0-9._-]*")
_HTML_HEAD = (
    "<!DOCTYPE html>\n<html>\n  <head>\n"
    f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
    "    <title>Simple index</title>\n  </head>\n  <body>\n"
)
_HTML_TAIL = "  </body>\n</html>\n"


def _html_line(name: str, display: str) -> str:
    """One link; escaped, although a valid name (all the list holds) never needs it."""
    if not (_PLAIN.fullmatch(name) and _PLAIN.fullmatch(display)):
        name, display = escape(name, quote=True), escape(display, quote=True)
    return f'    <a href="{name}/">{display}</a>\n'


def _json_head(serial: int | None) -> str:
    meta: dict[str, Any] = {"api-version": API_VERSION}
    if serial is not None:
        meta["_last-serial"] = serial
    return '{"meta":' + json.dumps(meta, sort_keys=True, separators=(",", ":")) + ',"projects":['


def _json_item(display: str, serial: int) -> str:
    """``json.dumps({"name": display, "_last-serial": serial}, ensure_ascii=False)``,
    without its cost for plain names."""
    if _PLAIN.fullmatch(display):
        return f'{{"name": "{display}", "_last-serial": {serial}}}'
    return json.dumps({"name": display, "_last-serial": serial}, ensure_ascii=False)


def _gzip_temp(directory: Path, source: Path) -> Path:
    """A gzip-encoded copy of ``source`` in a new temp file (deterministic: no time in it)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as raw, source.open("rb") as handle:
            with igzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
                while chunk := handle.read(1 << 20):
                    out.write(chunk)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


class _TempFile:
    """A new temp file in ``directory``, written in big batches, hashed as it is written.

    Callers rename it into place once closed, so readers never see a partial list.
    """

    BATCH = 4096  # lines joined into one write

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        self.path = Path(name)
        self.digest = hashlib.sha256()
        self._handle = os.fdopen(fd, "wb")
        self._pending: list[str] = []

    def write(self, text: str) -> None:
        self._pending.append(text)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def write_all(self, lines: Iterable[str]) -> int:
        """Write every line; how many there were."""
        count = 0
        try:
            for line in lines:
                self.write(line)
                count += 1
        except BaseException:
            self.discard()
            raise
        return count

    def close(self) -> Path:
        """Flush, sync and close; the path to rename into place."""
        try:
            self._flush()
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)

    def _flush(self) -> None:
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        self.digest.update(data)
        self._handle.write(data)
