"""Named indexes: their definitions in the database, and the view each one is here.

Every host of a deployment reads the same definitions; each process rebuilds its
views when they changed (read again at most every ``RELOAD`` seconds).  The
index ``main`` is ``/simple/``: its bases are every upstream, in priority order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import func, select

from pypicache.cache.changes import REMOVE, record_change
from pypicache.cache.router import Base, Router, Source
from pypicache.db import Database
from pypicache.errors import IndexProblem
from pypicache.models import PRIVATE_PREFIX, AuditEntry, IndexDefinition, Project, utcnow
from pypicache.times import format_duration
from pypicache.upstream.routing import Route, valid_upstream_name

MAIN = "main"
# Seconds a process serves the definitions it read before it reads them again.
RELOAD = 2.0


def private_source(index: str) -> str:
    """The source of an index's private projects' rows (``@main`` for main's)."""
    return PRIVATE_PREFIX + index


@dataclass(frozen=True)
class IndexInfo:
    """An index as defined: bases None means every upstream (main)."""

    name: str
    description: str | None
    bases: tuple[str, ...] | None
    uploaders: tuple[str, ...] | None  # None: any user may upload
    read_auth: bool = False  # reads need a login, whatever pypicache.read_auth says
    cooldown: timedelta | None = None  # None: pypicache.cooldown's

    def may_upload(self, user: str, *, admin: bool) -> bool:
        return admin or self.uploaders is None or user in self.uploaders


class Indexes:
    """The indexes of this deployment, and the view (a Router) of each."""

    def __init__(
        self,
        database: Database,
        main: Router,
        private_of: Callable[[str], Source],
        routes: Sequence[Route],
    ) -> None:
        """``private_of(index)``: a new Source for the private projects of ``index``."""
        self._database = database
        self.main = main
        self._private_of = private_of
        self._routes = tuple(routes)
        self._lock = threading.Lock()
        self._infos: dict[str, IndexInfo] = {}
        self._views: dict[str, Router] = {MAIN: main}
        self._privates: dict[str, Source] = {MAIN: main.private}
        self._read_at = float("-inf")

    # -- reading ---------------------------------------------------------------------------

    def view(self, name: str) -> Router:
        """The index named ``name``; KeyError when there is none."""
        if name == MAIN:
            return self.main
        self._refresh()
        return self._views[name]

    def info(self, name: str) -> IndexInfo:
        self._refresh(force=True)
        try:
            return self._infos[name]
        except KeyError:
            raise IndexProblem(f"there is no index named {name!r}") from None

    def needs_login(self, name: str) -> bool:
        """Whether reading ``name`` takes a login (per request: the copy read last)."""
        self._refresh()
        info = self._infos.get(name)
        return info is not None and info.read_auth

    def cooldown(self, name: str) -> timedelta | None:
        """The cooldown an index sets for itself (per request: the copy read last); None:
        the deployment's."""
        self._refresh()
        info = self._infos.get(name)
        return info.cooldown if info is not None else None

    def all(self) -> list[IndexInfo]:
        self._refresh(force=True)
        return sorted(self._infos.values(), key=lambda i: (i.name != MAIN, i.name))

    def _refresh(self, force: bool = False) -> None:
        # Checked before the lock too: every page request (the hot path's included) asks.
        if not force and time.monotonic() - self._read_at < RELOAD:
            return
        with self._lock:
            if not force and time.monotonic() - self._read_at < RELOAD:
                return
            with self._database.unit_of_work() as db:
                infos = {d.name: _info(d) for d in db.scalars(select(IndexDefinition))}
            self._read_at = time.monotonic()
            if infos != self._infos:
                self._infos = infos
                self._views = self._build(infos)

    def _build(self, infos: dict[str, IndexInfo]) -> dict[str, Router]:
        views: dict[str, Router] = {MAIN: self.main}

        def build(name: str, seen: tuple[str, ...]) -> Router:
            if name in views:
                return views[name]
            bases: list[Base] = []
            for base in infos[name].bases or ():
                if base in infos and base not in seen:
                    bases.append(build(base, (*seen, name)))
                elif base in self.main.upstream_names:
                    bases.append(self.main.upstream(base))
                # else: an upstream no longer configured, or a cycle made by hand: skipped
            if name not in self._privates:
                self._privates[name] = self._private_of(name)
            views[name] = Router(self._privates[name], bases, self._routes, name=name)
            return views[name]

        for name in infos:
            build(name, ())
        return views

    # -- changing --------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        bases: Sequence[str],
        description: str | None,
        uploaders: Sequence[str] | None,
        actor: str,
        read_auth: bool = False,
        cooldown: timedelta | None = None,
    ) -> IndexInfo:
        if not valid_upstream_name(name):
            raise IndexProblem(
                f"{name!r} is no index name: use a-z, 0-9 and '-' (63 at most), "
                "starting with a letter or digit"
            )
        if name in self.main.upstream_names:
            raise IndexProblem(f"{name!r} is the name of an upstream")
        with self._database.unit_of_work() as db:
            if db.scalar(select(IndexDefinition.id).where(IndexDefinition.name == name)):
                raise IndexProblem(f"there is an index named {name!r} already")
            self._check_bases(db, name, bases)
            now = utcnow()
            db.add(
                IndexDefinition(
                    name=name,
                    description=description,
                    bases=list(bases),
                    uploaders=list(uploaders or ()),
                    read_auth=read_auth,
                    cooldown=_seconds(cooldown),
                    created_at=now,
                    updated_at=now,
                )
            )
            detail = f"bases {', '.join(bases) or 'none'}"
            db.add(
                AuditEntry(at=now, action="index-create", project=name, actor=actor, detail=detail)
            )
        return self.info(name)

    def update(
        self,
        name: str,
        *,
        bases: Sequence[str] | None = None,
        description: str | None = None,
        uploaders: Sequence[str] | None = None,
        read_auth: bool | None = None,
        cooldown: timedelta | Literal["default"] | None = None,
        actor: str,
    ) -> IndexInfo:
        """Change what is given; ``cooldown="default"`` goes back to pypicache.cooldown's."""
        with self._database.unit_of_work() as db:
            row = self._row(db, name)
            changed = []
            if cooldown is not None:
                row.cooldown = None if cooldown == "default" else _seconds(cooldown)
                changed.append(
                    "cooldown as pypicache.cooldown"
                    if row.cooldown is None
                    else f"cooldown {format_duration(timedelta(seconds=row.cooldown))}"
                )
            if read_auth is not None:
                row.read_auth = read_auth
                changed.append("reads need a login" if read_auth else "anyone may read")
            if bases is not None:
                if name == MAIN:
                    raise IndexProblem("the bases of main are every upstream, in priority order")
                self._check_bases(db, name, bases)
                row.bases = list(bases)
                changed.append(f"bases {', '.join(bases) or 'none'}")
            if description is not None:
                row.description = description
                changed.append("description")
            if uploaders is not None:
                row.uploaders = list(uploaders)
                changed.append(f"uploaders {', '.join(uploaders) or 'admins only'}")
            row.updated_at = utcnow()
            db.add(
                AuditEntry(
                    at=row.updated_at,
                    action="index-update",
                    project=name,
                    actor=actor,
                    detail="; ".join(changed) or "nothing",
                )
            )
        return self.info(name)

    def delete(self, name: str, *, force: bool, actor: str) -> int:
        """Delete an index; returns how many of its private projects went with it.

        Refused while it has private projects or is the base of another index, unless
        ``force``: then those go, and it leaves the other indexes' bases.
        """
        if name == MAIN:
            raise IndexProblem("main is /simple/: it cannot be deleted")
        with self._database.unit_of_work() as db:
            row = self._row(db, name)
            users = [d for d in db.scalars(select(IndexDefinition)) if name in (d.bases or ())]
            projects = db.scalar(
                select(func.count())
                .select_from(Project)
                .where(Project.source == private_source(name))
            )
            if not force and (projects or users):
                reasons = []
                if projects:
                    reasons.append(f"it has {projects} private projects")
                if users:
                    reasons.append("it is a base of " + ", ".join(d.name for d in users))
                raise IndexProblem(
                    f"index {name!r} not deleted: {'; '.join(reasons)} (--force deletes anyway)"
                )
            for other in users:
                other.bases = [b for b in other.bases or () if b != name]
            for project in db.scalars(
                select(Project).where(Project.source == private_source(name))
            ):
                db.delete(project)
                record_change(db, project.name, REMOVE)
            db.delete(row)
            db.add(
                AuditEntry(
                    at=utcnow(),
                    action="index-delete",
                    project=name,
                    actor=actor,
                    detail=f"{projects} private projects deleted" if projects else None,
                )
            )
        self._refresh(force=True)
        return projects or 0

    def _row(self, db, name: str) -> IndexDefinition:  # type: ignore[no-untyped-def]
        row = db.scalar(select(IndexDefinition).where(IndexDefinition.name == name))
        if row is None:
            raise IndexProblem(f"there is no index named {name!r}")
        return row

    def _check_bases(self, db, name: str, bases: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
        """Every base names an upstream or an index, once, and none leads back to ``name``."""
        defined = {d.name: d.bases for d in db.scalars(select(IndexDefinition))}
        if len(set(bases)) != len(bases):
            raise IndexProblem("a base is named twice")
        for base in bases:
            if base not in defined and base not in self.main.upstream_names:
                raise IndexProblem(f"{base!r} is neither an upstream nor an index")
        pending = [b for b in bases if b in defined]
        seen: set[str] = set()
        while pending:
            current = pending.pop()
            if current == name:
                raise IndexProblem(f"the bases of {name!r} would lead back to it")
            if current in seen:
                continue
            seen.add(current)
            pending.extend(b for b in defined.get(current) or () if b in defined)

    def forget(self, name: str) -> None:
        """Drop what this process remembers of ``name`` in every index."""
        for view in list(self._views.values()):
            view.forget(name)

    def stop(self) -> None:
        """Stop the private sources this process made (main's stops with main)."""
        for name, source in self._privates.items():
            if name != MAIN:
                source.stop()


def _info(row: IndexDefinition) -> IndexInfo:
    return IndexInfo(
        row.name,
        row.description,
        tuple(row.bases) if row.bases is not None else None,
        tuple(row.uploaders) if row.uploaders is not None else None,
        row.read_auth,
        timedelta(seconds=row.cooldown) if row.cooldown is not None else None,
    )


def _seconds(cooldown: timedelta | None) -> int | None:
    return int(cooldown.total_seconds()) if cooldown is not None else None
