"""The page store: what the database holds of a project page; how upstream pages change it."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pypicache.cache.rendering import PageData, RenderedPage, render
from pypicache.filefacts import facts_of, new_row, write_facts
from pypicache.models import Alarm, AuditEntry, Project, utcnow
from pypicache.upstream.entries import UpstreamPage

log = logging.getLogger(__name__)


# The alarm raised when the upstream answers with something that is not the project's page.
INVALID_PAGE_ALARM = "upstream-invalid-page"


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


def load_project(db: Session, name: str) -> Project | None:
    return db.scalar(
        select(Project).where(Project.name == name).options(selectinload(Project.files))
    )


def age_of(project: Project) -> float:
    if project.checked_at is None:
        return float("inf")
    return (utcnow() - project.checked_at).total_seconds()


def apply_page(db: Session, project: Project, page: UpstreamPage) -> set[str]:
    """Make the stored page say what the upstream page says.

    Returns the sha256 of blobs the page no longer uses; they are deleted
    once this transaction committed and no other file refers to them.
    """
    now = utcnow()
    dropped: set[str] = set()
    existing = {f.filename: f for f in project.files if f.origin == "upstream"}
    private = {f.filename: f for f in project.files if f.origin == "private"}
    for uf in page.files:
        if uf.filename in private:
            continue  # a private file of that name wins over the upstream's
        row = existing.pop(uf.filename, None)
        if row is None:
            project.files.append(new_row(uf))
            continue
        if uf.sha256 and row.sha256 and uf.sha256 != row.sha256:
            # Hashes rule: the old bytes are never served again for this name.
            # PyPI forbids reusing a filename, so this is also an alarm.
            detail = f"upstream hash changed from {row.sha256} to {uf.sha256}"
            log.error("invalidated %s/%s: %s", project.name, uf.filename, detail)
            db.add(
                AuditEntry(
                    at=now,
                    action="invalidate",
                    project=project.name,
                    filename=uf.filename,
                    old_sha256=row.sha256,
                    new_sha256=uf.sha256,
                    serial=page.serial,
                    detail=detail,
                )
            )
            db.add(
                Alarm(
                    at=now,
                    kind="upstream-mutation",
                    project=project.name,
                    filename=uf.filename,
                    detail=detail,
                )
            )
            if row.cached_at is not None:
                dropped.add(row.sha256)
            row.cached_at = None
        write_facts(row, uf.keeping_known(facts_of(row)))
    for gone in existing.values():
        log.info("%s/%s was removed upstream", project.name, gone.filename)
        db.add(
            AuditEntry(
                at=now,
                action="remove-file",
                project=project.name,
                filename=gone.filename,
                old_sha256=gone.sha256,
                serial=page.serial,
                detail="no longer listed upstream",
            )
        )
        if gone.cached_at is not None and gone.sha256:
            dropped.add(gone.sha256)
        project.files.remove(gone)
    project.versions = sorted(
        set(page.versions) | {f.version for f in private.values() if f.version}
    )
    project.last_serial = page.serial
    project.upstream_etag = page.etag
    project.status = page.status
    project.status_reason = page.status_reason
    project.checked_at = now
    return dropped


def snapshot(project: Project) -> RenderedPage:
    return render(
        PageData(
            name=project.name,
            display_name=project.display_name,
            serial=project.last_serial,
            versions=list(project.versions or ()),
            files=[facts_of(f) for f in project.files],
            private=project.private,
        )
    )


def older(serial: int | None, stored: int | None) -> bool:
    return serial is not None and stored is not None and serial < stored
