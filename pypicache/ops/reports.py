"""What the admin pages show: cache numbers, project search, audit log, alarms, shadowed names.

Everything is a bounded query: the project search and the audit log page in the
database, so they stay fast with a hundred thousand cached projects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from packaging.version import InvalidVersion, Version
from sqlalchemy import case, func, select, update

from pypicache.cache.projectlist import ProjectList
from pypicache.db import Database
from pypicache.errors import ProjectNotFound
from pypicache.filefacts import FileFacts, facts_of
from pypicache.models import Alarm, AuditEntry, File, Project, ProjectMember, User, utcnow

PAGE_SIZE = 50
# What the follower did to the cache: the dashboard's "recent invalidations".
INVALIDATIONS = ("invalidate", "remove-file", "remove-project")
KINDS = ("all", "cached", "private")

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    number: int  # from 1
    total: int  # items on all pages
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(math.ceil(self.total / self.size), 1)

    @property
    def first_item(self) -> int:
        return (self.number - 1) * self.size + 1 if self.items else 0

    @property
    def last_item(self) -> int:
        return self.first_item + len(self.items) - 1 if self.items else 0


@dataclass(frozen=True)
class CacheCounts:
    projects: int
    private_projects: int
    files: int  # listed on the pages
    cached_files: int  # with bytes in the store
    stored_bytes: int  # of distinct blobs: files with the same bytes share one


@dataclass(frozen=True)
class ProjectRow:
    name: str
    display_name: str
    source: str  # the upstream it is cached from, or the private projects'
    private: bool
    merge_upstream: bool
    checked_at: datetime | None
    files: int = 0
    cached_files: int = 0


class FileRow(FileFacts, frozen=True, gc=False):
    """A file's facts as the admin's project page lists them, with where it came from."""

    origin: str
    cached_at: datetime | None
    upload_time_seen: bool  # the upstream gave no upload time: it is when we first saw it


@dataclass(frozen=True)
class ProjectDetail:
    name: str
    display_name: str
    source: str
    private: bool
    merge_upstream: bool
    last_serial: int | None
    checked_at: datetime | None
    files: list[FileRow]
    members: list[str]  # who may upload to a private project, besides admins
    status: str | None = None  # PEP 792, as the upstream said it
    status_reason: str | None = None

    @property
    def cached_upstream_files(self) -> int:
        return sum(1 for f in self.files if f.origin == "upstream" and f.cached_at)


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    action: str
    project: str
    filename: str | None
    old_sha256: str | None
    new_sha256: str | None
    serial: int | None
    detail: str | None
    actor: str | None


@dataclass(frozen=True)
class AlarmRow:
    id: int
    at: datetime
    kind: str
    project: str
    filename: str | None
    detail: str
    acknowledged_at: datetime | None


@dataclass(frozen=True)
class ShadowedName:
    name: str
    display_name: str
    merge_upstream: bool
    private_files: int


def search_term(query: str) -> str:
    """A partial name normalized the way project names are (PEP 503), for matching them."""
    return re.sub(r"[-_.]+", "-", query.strip().lower())


class Reports:
    def __init__(
        self, database: Database, project_list: ProjectList, sources: Sequence[str]
    ) -> None:
        """``sources``: the order names resolve in (private projects, then the upstreams)."""
        self._database = database
        self._project_list = project_list
        self._sources = list(sources)

    # -- the cache -------------------------------------------------------------------------

    def cache_counts(self) -> CacheCounts:
        with self._database.unit_of_work() as db:
            projects, private = db.execute(
                select(func.count(), func.count().filter(Project.private.is_(True))).select_from(
                    Project
                )
            ).one()
            files = db.scalar(select(func.count()).select_from(File)) or 0
            blobs = (
                select(File.sha256, func.max(File.size).label("size"))
                .where(File.cached_at.is_not(None))
                .group_by(File.sha256)
                .subquery()
            )
            stored_bytes = db.scalar(select(func.coalesce(func.sum(blobs.c.size), 0))) or 0
            cached = db.scalar(
                select(func.count()).select_from(File).where(File.cached_at.is_not(None))
            )
        return CacheCounts(projects, private, files, cached or 0, int(stored_bytes))

    def search_projects(self, query: str, *, kind: str = "all", page: int = 1) -> Page[ProjectRow]:
        """Projects whose normalized name contains ``query``: the exact name first, then
        names starting with it, then the rest, alphabetically."""
        term = search_term(query)
        conditions = []
        if term:
            conditions.append(Project.name.contains(term, autoescape=True))
        if kind == "private":
            conditions.append(Project.private.is_(True))
        elif kind == "cached":
            conditions.append(Project.private.is_(False))
        order = [Project.name]
        if term:
            rank = case(
                (Project.name == term, 0),
                (Project.name.startswith(term, autoescape=True), 1),
                else_=2,
            )
            order.insert(0, rank)  # type: ignore[arg-type]
        with self._database.unit_of_work() as db:
            total = db.scalar(select(func.count()).select_from(Project).where(*conditions)) or 0
            page = _clamp(page, total)
            rows = db.execute(
                select(
                    Project.id,
                    Project.name,
                    Project.display_name,
                    Project.source,
                    Project.private,
                    Project.merge_upstream,
                    Project.checked_at,
                )
                .where(*conditions)
                .order_by(*order)
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            ).all()
            # Counted for this page's projects only, never for every match.
            counts = {
                project_id: (files, cached)
                for project_id, files, cached in db.execute(
                    select(
                        File.project_id,
                        func.count(),
                        func.count().filter(File.cached_at.is_not(None)),
                    )
                    .where(File.project_id.in_([row.id for row in rows]))
                    .group_by(File.project_id)
                )
            }
        items = [
            ProjectRow(
                row.name,
                row.display_name,
                row.source,
                row.private,
                row.merge_upstream,
                row.checked_at,
                *counts.get(row.id, (0, 0)),
            )
            for row in rows
        ]
        return Page(items, page, total)

    def project(self, name: str) -> ProjectDetail:
        """The stored page of ``name`` that clients get: the first source in resolution
        order that holds one."""
        with self._database.unit_of_work() as db:
            rows = {p.source: p for p in db.scalars(select(Project).where(Project.name == name))}
            ordered = [rows[s] for s in self._sources if s in rows] + list(rows.values())
            project = ordered[0] if ordered else None
            if project is None:
                raise ProjectNotFound(name)
            files = sorted(
                (
                    facts_of(
                        f,
                        FileRow,
                        origin=f.origin,
                        cached_at=f.cached_at,
                        upload_time_seen=f.upload_time_seen,
                    )
                    for f in project.files
                ),
                key=lambda f: (_version_key(f.version), f.filename),
                reverse=True,
            )
            members = list(
                db.scalars(
                    select(User.name)
                    .join(ProjectMember, ProjectMember.user_id == User.id)
                    .where(ProjectMember.project_id == project.id)
                    .order_by(User.name)
                )
            )
            return ProjectDetail(
                project.name,
                project.display_name,
                project.source,
                project.private,
                project.merge_upstream,
                project.last_serial,
                project.checked_at,
                files,
                members,
                project.status,
                project.status_reason,
            )

    def shadowed(self) -> list[ShadowedName]:
        """Private projects whose name the upstream has too: what shadowing protects."""
        with self._database.unit_of_work() as db:
            rows = db.execute(
                select(
                    Project.name,
                    Project.display_name,
                    Project.merge_upstream,
                    func.count(File.id).filter(File.origin == "private"),
                )
                .outerjoin(File)
                .where(Project.private.is_(True))
                .group_by(Project.id)
                .order_by(Project.name)
            ).all()
        upstream = self._project_list.upstream_names_among({row[0] for row in rows})
        return [ShadowedName(*row) for row in rows if row[0] in upstream]

    # -- the audit log ---------------------------------------------------------------------

    def audit(
        self, *, page: int = 1, action: str | None = None, project: str | None = None
    ) -> Page[AuditRow]:
        """The audit log, newest first."""
        conditions = []
        if action:
            conditions.append(AuditEntry.action == action)
        if project:
            conditions.append(AuditEntry.project == search_term(project))
        with self._database.unit_of_work() as db:
            total = db.scalar(select(func.count()).select_from(AuditEntry).where(*conditions)) or 0
            page = _clamp(page, total)
            entries = db.scalars(
                select(AuditEntry)
                .where(*conditions)
                .order_by(AuditEntry.id.desc())
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            )
            return Page([_audit_row(e) for e in entries], page, total)

    def audit_actions(self) -> list[str]:
        """The actions the log holds, for the filter."""
        with self._database.unit_of_work() as db:
            actions = select(AuditEntry.action).distinct().order_by(AuditEntry.action)
            return list(db.scalars(actions))

    def recent_invalidations(self, limit: int = 8) -> list[AuditRow]:
        with self._database.unit_of_work() as db:
            entries = db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.in_(INVALIDATIONS))
                .order_by(AuditEntry.id.desc())
                .limit(limit)
            )
            return [_audit_row(e) for e in entries]

    # -- alarms ----------------------------------------------------------------------------

    def open_alarms(self, limit: int = 100) -> list[AlarmRow]:
        """The newest unacknowledged alarms."""
        with self._database.unit_of_work() as db:
            alarms = db.scalars(
                select(Alarm)
                .where(Alarm.acknowledged_at.is_(None))
                .order_by(Alarm.id.desc())
                .limit(limit)
            )
            return [_alarm_row(a) for a in alarms]

    def open_alarm_count(self) -> int:
        with self._database.unit_of_work() as db:
            count = select(func.count()).select_from(Alarm).where(Alarm.acknowledged_at.is_(None))
            return db.scalar(count) or 0

    def acknowledged_alarms(self, page: int = 1) -> Page[AlarmRow]:
        with self._database.unit_of_work() as db:
            acknowledged = Alarm.acknowledged_at.is_not(None)
            total = db.scalar(select(func.count()).select_from(Alarm).where(acknowledged)) or 0
            page = _clamp(page, total)
            alarms = db.scalars(
                select(Alarm)
                .where(acknowledged)
                .order_by(Alarm.acknowledged_at.desc(), Alarm.id.desc())
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            )
            return Page([_alarm_row(a) for a in alarms], page, total)

    def acknowledge(self, alarm_ids: Sequence[int], *, actor: str) -> int:
        """Acknowledge alarms (an operator has looked); each one goes to the audit log."""
        now = utcnow()
        with self._database.unit_of_work() as db:
            alarms = list(
                db.scalars(
                    select(Alarm).where(Alarm.id.in_(alarm_ids), Alarm.acknowledged_at.is_(None))
                )
            )
            for alarm in alarms:
                db.add(
                    AuditEntry(
                        at=now,
                        action="acknowledge",
                        project=alarm.project,
                        filename=alarm.filename,
                        actor=actor,
                        detail=f"{alarm.kind}: {alarm.detail}",
                    )
                )
            acknowledged = [a.id for a in alarms]
            db.execute(update(Alarm).where(Alarm.id.in_(acknowledged)).values(acknowledged_at=now))
            return len(alarms)


def _clamp(page: int, total: int) -> int:
    return min(max(page, 1), max(math.ceil(total / PAGE_SIZE), 1))


def _version_key(version: str | None) -> tuple[int, Version | str]:
    try:
        return 1, Version(version or "")
    except InvalidVersion:
        return 0, version or ""


def _audit_row(e: AuditEntry) -> AuditRow:
    return AuditRow(
        e.id,
        e.at,
        e.action,
        e.project,
        e.filename,
        e.old_sha256,
        e.new_sha256,
        e.serial,
        e.detail,
        e.actor,
    )


def _alarm_row(a: Alarm) -> AlarmRow:
    return AlarmRow(a.id, a.at, a.kind, a.project, a.filename, a.detail, a.acknowledged_at)
