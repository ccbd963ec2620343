"""The page store: what the database holds of a project page; how upstream pages change it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session, raiseload, selectinload

from pypicache.cache.changes import REMOVE, name_serial, record_change
from pypicache.cache.quarantine import Removal
from pypicache.cache.rendering import PageData, RenderedPage, render, version_key
from pypicache.errors import ProjectNotFound
from pypicache.filefacts import FACT_FIELDS, FileFacts, fact_values, facts_of
from pypicache.models import Alarm, AuditEntry, File, Project, ProvenanceDocument, utcnow
from pypicache.upstream.entries import UpstreamPage

log = logging.getLogger(__name__)


# The alarm raised when the upstream answers with something that is not the project's page.
INVALID_PAGE_ALARM = "upstream-invalid-page"
# The alarm raised when files the cache held were removed upstream.
REMOVED_ALARM = "upstream-removed"
QUARANTINED = "quarantined"


def alarm_invalid_page(db: Session, name: str, reason: str) -> None:
    """One open alarm per project while its upstream sends invalid pages, not one a request."""
    open_alarm = db.scalar(
        select(Alarm.id).where(
            Alarm.kind == INVALID_PAGE_ALARM,
            Alarm.project == name,
            Alarm.acknowledged_at.is_(None),
        )
    )
    if open_alarm is None:
        log.error("upstream sent an invalid page for %s: %s", name, reason)
        db.add(Alarm(at=utcnow(), kind=INVALID_PAGE_ALARM, project=name, detail=reason))


def load_project(db: Session, source: str, name: str) -> Project | None:
    """The project with its files as ORM rows, for changes made one row at a time."""
    return db.scalar(
        select(Project)
        .where(Project.source == source, Project.name == name)
        .options(selectinload(Project.files))
    )


# Built once: building a statement and its cache key cost more than running it (60 of
# 140 µs), and a cold page reads its project's row three times.
_PAGE_ROW = (
    select(Project)
    .where(Project.source == bindparam("source"), Project.name == bindparam("name"))
    .options(raiseload(Project.files))
)


def load_page_row(db: Session, source: str, name: str) -> Project | None:
    """The project's own row; its files are read with ``stored_files``, never lazily."""
    return db.scalar(_PAGE_ROW, {"source": source, "name": name})


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file row as the page store reads it: its facts and the row's bookkeeping."""

    id: int
    origin: str
    cached_at: datetime | None
    upload_time_seen: bool
    facts: FileFacts


_STORED_COLUMNS = (
    File.id,
    File.origin,
    File.cached_at,
    File.upload_time_seen,
    *(File.__table__.c[n] for n in FACT_FIELDS),
)


_STORED = select(*_STORED_COLUMNS).where(File.project_id == bindparam("project_id"))
_STORED_NAMED = _STORED.where(File.filename.in_(bindparam("names", expanding=True)))


def stored_files(db: Session, project_id: int) -> list[StoredFile]:
    """Every file of a project, read as plain rows: a page of 11,000 files is one query."""
    # The session's connection, not the session: Core rows, without the ORM's result work.
    rows = db.connection().execute(_STORED, {"project_id": project_id})
    return _as_stored(rows)


def _as_stored(rows: Iterable[Sequence[Any]]) -> list[StoredFile]:
    return [
        StoredFile(i, origin, at, bool(seen), FileFacts(*facts))
        for i, origin, at, seen, *facts in rows
    ]


def stored_files_named(db: Session, project_id: int, filenames: Sequence[str]) -> list[StoredFile]:
    """The project's files of these names (those it has), as ``stored_files`` reads them."""
    found: list[StoredFile] = []
    for start in range(0, len(filenames), _DELETE_BATCH):
        batch = filenames[start : start + _DELETE_BATCH]
        rows = db.connection().execute(_STORED_NAMED, {"project_id": project_id, "names": batch})
        found.extend(_as_stored(rows))
    return found


def age_of(project: Project) -> float:
    if project.checked_at is None:
        return float("inf")
    return (utcnow() - project.checked_at).total_seconds()


@dataclass
class _Changes:
    """What applying a page does to the files table, gathered first and written at once."""

    # New files, with whether their upload time is the time first seen.
    inserts: list[tuple[FileFacts, bool]] = field(default_factory=list)
    updates: list[dict[str, object]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    audits: list[dict[str, object]] = field(default_factory=list)
    alarms: list[dict[str, object]] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    # Files whose stored provenance no longer holds: other bytes, or another document.
    stale_provenance: list[int] = field(default_factory=list)


def apply_page(
    db: Session, project: Project, stored: Sequence[StoredFile], page: UpstreamPage
) -> tuple[list[FileFacts], list[Removal]]:
    """Make the stored page say what the upstream page says, writing only what changed.

    Returns the files the page now lists, and the files the upstream took back
    (removed, replaced, or in a project it quarantined): their blobs go to the
    quarantine area once this transaction committed.  A big page where one file
    changed writes one row.
    """
    now = utcnow()
    changes = _Changes()
    existing = {s.facts.filename: s for s in stored if s.origin == "upstream"}
    private = {s.facts.filename: s.facts for s in stored if s.origin == "private"}
    listed = list(private.values())
    quarantined = page.status == QUARANTINED
    # A page older than a removal the changelog announced (a CDN's stale copy) does not
    # bring the removed files back.
    # A first page needs no look (a new row has no serial yet): a removed project's rows
    # are gone, and its first page is checked against the removal (project_removed_after).
    stored_before = project.last_serial is not None
    new = [f.filename for f in page.files if f.filename not in existing] if stored_before else []
    taken_back = removed_after(db, project.name, page.serial, new) if new else set()
    # PEP 792: a quarantined project offers no file, whatever its page still lists.
    why_gone = (
        f"the upstream quarantined {project.name}: {page.status_reason or 'no reason given'}"
        if quarantined
        else f"no longer listed upstream (serial {page.serial})"
    )
    for uf in () if quarantined else page.files:
        if uf.filename in private:
            continue  # a private file of that name wins over the upstream's
        row = existing.pop(uf.filename, None)
        seen = uf.filename in page.first_seen
        if row is None and uf.filename in taken_back:
            log.warning("%s/%s: the page predates its removal; left out", project.name, uf.filename)
            continue
        if row is None:
            changes.inserts.append((uf, seen))
            listed.append(uf)
            continue
        facts = uf.keeping_known(row.facts)
        if seen and row.facts.upload_time is not None:
            # Still none upstream: the time it had stays, first seen or the upstream's own.
            facts = msgspec.structs.replace(facts, upload_time=row.facts.upload_time)
            seen = row.upload_time_seen
        cached_at = row.cached_at
        if uf.sha256 and row.facts.sha256 and uf.sha256 != row.facts.sha256:
            _hash_changed(changes, project, row, uf.sha256, page.serial, now)
            cached_at = None
            changes.stale_provenance.append(row.id)
        elif facts.provenance != row.facts.provenance and row.facts.provenance is not None:
            changes.stale_provenance.append(row.id)
        if facts != row.facts or cached_at != row.cached_at or seen != row.upload_time_seen:
            changes.updates.append(
                {
                    **fact_values(facts),
                    "id": row.id,
                    "cached_at": cached_at,
                    "upload_time_seen": seen,
                }
            )
        listed.append(facts)
    for gone in existing.values():
        log.info("%s/%s was removed upstream", project.name, gone.facts.filename)
        changes.audits.append(
            _audit(
                now,
                "remove-file",
                project.name,
                gone.facts.filename,
                old_sha256=gone.facts.sha256,
                serial=page.serial,
                detail=why_gone,
            )
        )
        if gone.facts.sha256:
            changes.removed.append(_removal(project, gone.facts, why_gone))
        changes.deletes.append(gone.id)
    if changes.deletes:
        changes.alarms.append(_removal_alarm(now, project.name, existing.values(), why_gone))
    _write(db, project.id, changes)
    versions = [] if quarantined else _versions(page, private.values())
    changed = bool(changes.inserts or changes.updates or changes.deletes) or (
        (versions, page.status, page.status_reason)
        != (project.versions, project.status, project.status_reason)
    )
    project.versions = versions
    project.last_serial = page.serial
    project.upstream_etag = page.etag
    project.status = page.status
    project.status_reason = page.status_reason
    project.checked_at = now
    if changed:
        record_change(db, project.name)
    return listed, changes.removed


def apply_page_over(
    db: Session, project: Project, known: Mapping[str, FileFacts], page: UpstreamPage
) -> tuple[list[FileFacts], list[Removal]]:
    """``apply_page`` for a project of upstream files only, whose stored files are
    ``known`` (a page this process holds and knows to be current): the rows of the
    files the page says something else about, and of those it no longer lists, are
    the only ones read; a big page where one file changed reads and writes one row.
    """
    listed: list[FileFacts] = []
    differing: list[FileFacts] = []
    for uf in page.files:
        facts = known.get(uf.filename)
        if facts is not None and (facts is uf or facts == uf):
            listed.append(facts)
        else:
            differing.append(uf)
    on_page = {uf.filename for uf in page.files}
    wanted = [uf.filename for uf in differing] + [f for f in known if f not in on_page]
    stored = stored_files_named(db, project.id, wanted)
    changed, removed = apply_page(db, project, stored, replace(page, files=tuple(differing)))
    return listed + changed, removed


def _removal(project: Project, facts: FileFacts, why: str) -> Removal:
    assert facts.sha256 is not None
    return Removal(facts.sha256, project.source, project.name, facts.filename, why)


# How many of a removal's files its alarm names; the quarantine area records every one.
_ALARM_NAMES = 20


def _removal_alarm(
    at: datetime, project: str, gone: Iterable[StoredFile], why: str
) -> dict[str, object]:
    """One alarm per removal, naming the files: a removed release is an incident until
    someone has looked at who installed it."""
    names = sorted(g.facts.filename for g in gone)
    shown = ", ".join(names[:_ALARM_NAMES]) + (
        f" and {len(names) - _ALARM_NAMES} more" if len(names) > _ALARM_NAMES else ""
    )
    return {
        "at": at,
        "kind": REMOVED_ALARM,
        "project": project,
        "filename": names[0] if len(names) == 1 else None,
        "detail": f"{len(names)} file(s) {why}: {shown}; their bytes, where cached, are in "
        "the quarantine area (pypicache quarantined)",
    }


def _hash_changed(
    changes: _Changes,
    project: Project,
    row: StoredFile,
    new_sha256: str,
    serial: int | None,
    now: datetime,
) -> None:
    """Hashes rule: the old bytes are never served again for this name.

    PyPI forbids reusing a filename, so this is also an alarm.
    """
    filename, old_sha256 = row.facts.filename, row.facts.sha256
    detail = f"upstream hash changed from {old_sha256} to {new_sha256}"
    log.error("invalidated %s/%s: %s", project.name, filename, detail)
    changes.audits.append(
        _audit(
            now,
            "invalidate",
            project.name,
            filename,
            old_sha256=old_sha256,
            new_sha256=new_sha256,
            serial=serial,
            detail=detail,
        )
    )
    changes.alarms.append(
        {
            "at": now,
            "kind": "upstream-mutation",
            "project": project.name,
            "filename": filename,
            "detail": detail,
        }
    )
    if old_sha256:
        changes.removed.append(
            _removal(project, row.facts, f"the upstream replaced its bytes with {new_sha256}")
        )


def _audit(
    at: datetime,
    action: str,
    project: str,
    filename: str,
    *,
    old_sha256: str | None,
    serial: int | None,
    detail: str,
    new_sha256: str | None = None,
) -> dict[str, object]:
    """An audit row; every row has every key, as one statement of many rows needs."""
    return {
        "at": at,
        "action": action,
        "project": project,
        "filename": filename,
        "old_sha256": old_sha256,
        "new_sha256": new_sha256,
        "serial": serial,
        "detail": detail,
    }


# Ids per DELETE: well below every database's limit on bound parameters.
_DELETE_BATCH = 500
# New rows per INSERT: a first page of 11,000 files built every row's parameters at
# once, 16 MB that stayed in the process as fragmented heap.
_INSERT_BATCH = 1000


def _write(db: Session, project_id: int, changes: _Changes) -> None:
    """The gathered changes as a few statements of many rows each."""
    for start in range(0, len(changes.inserts), _INSERT_BATCH):
        rows = [
            {
                **fact_values(facts),
                "origin": "upstream",
                "upload_time_seen": seen,
                "project_id": project_id,
            }
            for facts, seen in changes.inserts[start : start + _INSERT_BATCH]
        ]
        db.execute(insert(File.__table__), rows)  # the table's: no ORM work per row
    if changes.updates:
        db.execute(update(File), changes.updates)
    for start in range(0, len(changes.deletes), _DELETE_BATCH):
        batch = changes.deletes[start : start + _DELETE_BATCH]
        db.execute(delete(File).where(File.id.in_(batch)))  # their provenance goes with them
    for start in range(0, len(changes.stale_provenance), _DELETE_BATCH):
        batch = changes.stale_provenance[start : start + _DELETE_BATCH]
        db.execute(delete(ProvenanceDocument).where(ProvenanceDocument.file_id.in_(batch)))
    if changes.audits:
        db.execute(insert(AuditEntry.__table__), changes.audits)
    if changes.alarms:
        db.execute(insert(Alarm.__table__), changes.alarms)


def _versions(page: UpstreamPage, private: Iterable[FileFacts]) -> list[str]:
    return sorted(set(page.versions) | {f.version for f in private if f.version})


def first_page(name: str, page: UpstreamPage) -> RenderedPage:
    """The page storing ``page`` as a new project's makes: what ``snapshot`` would give,
    but for the serial, which only its write gives it (RenderedPage.same_as)."""
    return render(
        PageData(
            name=name,
            display_name=name,
            serial=None,
            versions=[] if page.status == QUARANTINED else _versions(page, ()),
            files=[] if page.status == QUARANTINED else list(page.files),
            private=False,
            status=page.status,
            status_reason=page.status_reason,
        )
    )


def snapshot(
    db: Session, project: Project, files: Iterable[FileFacts], serial: int | None = None
) -> RenderedPage:
    """The page of ``project`` listing ``files``, with the serial of its name's last change
    (this index's own serial space, not the upstream's; read unless given)."""
    return render(
        PageData(
            name=project.name,
            display_name=project.display_name,
            serial=name_serial(db, project.name) if serial is None else serial,
            versions=list(project.versions or ()),
            files=list(files),
            private=project.private,
            status=project.status,
            status_reason=project.status_reason,
        )
    )


def stored_page(db: Session, project: Project, serial: int | None = None) -> RenderedPage:
    """The page as the database holds it (``serial``: its name's, when read already)."""
    return snapshot(db, project, (s.facts for s in stored_files(db, project.id)), serial)


def older(serial: int | None, stored: int | None) -> bool:
    return serial is not None and stored is not None and serial < stored


def uncache_files(db: Session, source: str, name: str, actor: str) -> tuple[int, set[str]]:
    """Mark the project's cached upstream files not cached (audited): how many, and
    their sha256s.

    ProjectNotFound when there is no such project.
    """
    project = load_project(db, source, name)
    if project is None:
        raise ProjectNotFound(name)
    rows = [f for f in project.files if f.origin == "upstream" and f.cached_at]
    for row in rows:
        row.cached_at = None
    detail = f"{len(rows)} cached files dropped"
    db.add(AuditEntry(at=utcnow(), action="purge", project=name, actor=actor, detail=detail))
    return len(rows), {row.sha256 for row in rows if row.sha256}


def removed_after(db: Session, name: str, serial: int | None, filenames: list[str]) -> set[str]:
    """Those of ``filenames`` a removal after ``serial`` took back (none for a page
    without a serial: nothing says how old it is)."""
    if serial is None:
        return set()
    found: set[str] = set()
    for start in range(0, len(filenames), _DELETE_BATCH):
        found.update(
            db.scalars(
                select(AuditEntry.filename).where(
                    AuditEntry.project == name,
                    AuditEntry.action == "remove-file",
                    AuditEntry.serial > serial,
                    AuditEntry.filename.in_(filenames[start : start + _DELETE_BATCH]),
                )
            )
        )
    return found


# Built once, as _PAGE_ROW: every first page asks it.
_REMOVED_AFTER = (
    select(AuditEntry.serial)
    .where(
        AuditEntry.project == bindparam("name"),
        AuditEntry.action == "remove-project",
        AuditEntry.serial > bindparam("serial"),
    )
    .limit(1)
)


def project_removed_after(db: Session, name: str, serial: int | None) -> int | None:
    """The serial of the project's removal, when one came after ``serial``."""
    if serial is None:
        return None
    return db.scalar(_REMOVED_AFTER, {"name": name, "serial": serial})


def withdraw_files(
    db: Session,
    source: str,
    name: str,
    filenames: Iterable[str],
    versions: Iterable[str],
    serial: int,
) -> list[Removal]:
    """The changelog says these files (or every file of these versions) were removed
    upstream: they leave the page now, before any refetch, so an upstream that is down
    afterwards cannot leave them served as stale copies.  Audited and alarmed."""
    project = load_page_row(db, source, name)
    if project is None:
        return []
    named, releases = set(filenames), {version_key(v) for v in versions}
    gone = [
        s
        for s in stored_files(db, project.id)
        if s.origin == "upstream"
        and (s.facts.filename in named or version_key(s.facts.version) in releases)
    ]
    if not gone:
        return []
    why = f"removed upstream (changelog serial {serial})"
    now = utcnow()
    changes = _Changes(deletes=[g.id for g in gone])
    for g in gone:
        changes.audits.append(
            _audit(
                now,
                "remove-file",
                name,
                g.facts.filename,
                old_sha256=g.facts.sha256,
                serial=serial,
                detail=why,
            )
        )
        if g.facts.sha256:
            changes.removed.append(_removal(project, g.facts, why))
    changes.alarms.append(_removal_alarm(now, name, gone, why))
    _write(db, project.id, changes)
    # A removed release leaves the versions, unless a file of it stays (a private one).
    left = {version_key(s.facts.version) for s in stored_files(db, project.id)}
    project.versions = [v for v in project.versions or () if version_key(v) not in releases - left]
    record_change(db, name)
    return changes.removed


def remove_project(db: Session, source: str, name: str, serial: int | None) -> list[Removal]:
    """The upstream has no such project (any more): drop it, audited and alarmed.

    A private project keeps its own files and loses only the merged upstream ones.
    Returns the files it listed, whose blobs go to the quarantine area once committed.
    """
    project = load_project(db, source, name)
    if project is None:
        return []
    why = f"deleted upstream with its project (serial {serial})"
    if project.private:
        merged = [f for f in project.files if f.origin == "upstream"]
        for row in merged:
            project.files.remove(row)
        project.checked_at = utcnow()
        if merged:
            record_change(db, name)
        return [_removal(project, facts_of(f), why) for f in merged if f.sha256]
    log.warning("upstream no longer has %s; dropping its cached page", name)
    removed = [_removal(project, facts_of(f), why) for f in project.files if f.sha256]
    now = utcnow()
    names = sorted(f.filename for f in project.files)
    detail = f"deleted upstream with {len(names)} files listed"
    if names:
        shown = ", ".join(names[:_ALARM_NAMES])
        more = f" and {len(names) - _ALARM_NAMES} more" if len(names) > _ALARM_NAMES else ""
        detail += f": {shown}{more}; cached bytes are in the quarantine area"
    db.add(AuditEntry(at=now, action="remove-project", project=name, serial=serial, detail=detail))
    db.add(Alarm(at=now, kind="upstream-deleted", project=name, detail=detail))
    db.delete(project)
    record_change(db, name, REMOVE)
    return removed
