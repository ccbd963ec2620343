"""The files the rules hold back right now, in each index that judges them its own way.

An admin asks what is held, why and until when; the metric asks how many.  Neither may
read the whole files table of a big cache into memory: the candidates are selected in
SQL (files young enough for the longest cooldown in force, uploaded after the cutoff,
or of a project a block names) and only those are judged, by the guard itself, so the
listing says what a download would answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select

from pypicache.cache.indexes import MAIN, Indexes
from pypicache.cache.router import Router
from pypicache.db import Database
from pypicache.filefacts import FACT_FIELDS, FileFacts
from pypicache.models import PRIVATE_PREFIX, File, Project, utcnow
from pypicache.policy.guard import BLOCK, COOLDOWN, CUTOFF, Guard
from pypicache.policy.rules import BLOCK as BLOCK_RULE
from pypicache.policy.rules import RuleSet, read_block
from pypicache.settings import Settings

KINDS = (COOLDOWN, CUTOFF, BLOCK)
# Rows a listing keeps; the total counts the others too.
LIMIT = 1_000
# Names per ``IN (...)``: well under every database's limit of bound parameters.
_CHUNK = 500


@dataclass(frozen=True)
class HeldFile:
    """A file an index does not serve now, and why (``reason`` follows the filename)."""

    project: str
    filename: str
    index: str
    kind: str  # cooldown, cutoff or block
    reason: str
    until: datetime | None  # naive UTC; None: until a rule or a setting changes


@dataclass(frozen=True)
class HeldListing:
    """Held files, by project, filename and index, at most ``limit`` of them."""

    files: tuple[HeldFile, ...]
    total: int  # (file, index) pairs held, those left out of ``files`` included
    counts: Mapping[str, int]  # distinct files held in any index, by kind

    @property
    def truncated(self) -> bool:
        return self.total > len(self.files)


@dataclass(frozen=True)
class _Candidate:
    file_id: int
    source: str
    project: str
    facts: FileFacts


class HeldFiles:
    """What the guard holds back in the index main and in every named index with a
    cooldown or rules of its own (the others judge like main)."""

    def __init__(
        self, database: Database, guard: Guard, indexes: Indexes, settings: Settings
    ) -> None:
        self._database = database
        self._guard = guard
        self._indexes = indexes
        self._cutoff = settings.cutoff
        self._hold_private = settings.cooldown_private

    def scopes(self) -> list[str]:
        """main, then the named indexes that hold files their own way, by name."""
        ruled = {rule.index for rule in self._guard.rules.current().rules}
        own = sorted(
            info.name
            for info in self._indexes.all()
            if info.name != MAIN and (info.cooldown is not None or info.name in ruled)
        )
        return [MAIN, *own]

    def listing(self, limit: int = LIMIT) -> HeldListing:
        """The files held now in each scope; ``limit`` 0 only counts them."""
        now = utcnow()
        rules = self._guard.rules.current()
        views = self._views()
        files: list[HeldFile] = []
        total = 0
        held: dict[str, set[int]] = {kind: set() for kind in KINDS}
        for project, candidates, holders in self._projects(rules, list(views), now):
            judges = []
            for scope, view in views.items():
                answering = set(view.answering(project, holders.__contains__))
                if answering and (
                    rules.allows(scope, project) or all(_private(s) for s in answering)
                ):
                    judges.append((scope, answering, self._guard.context(scope, project, now)))
            for candidate in candidates:
                for scope, answering, context in judges:
                    if candidate.source not in answering:
                        continue
                    hold = self._guard.hold_of(context, candidate.facts)
                    if hold is None:
                        continue
                    total += 1
                    held[hold.kind].add(candidate.file_id)
                    if len(files) < limit:
                        filename = candidate.facts.filename
                        files.append(
                            HeldFile(project, filename, scope, hold.kind, hold.reason, hold.until)
                        )
        return HeldListing(tuple(files), total, {kind: len(ids) for kind, ids in held.items()})

    def counts(self) -> dict[str, int]:
        """Distinct files held in any index, by kind (what the metric shows)."""
        return dict(self.listing(limit=0).counts)

    def _views(self) -> dict[str, Router]:
        views: dict[str, Router] = {}
        for scope in self.scopes():
            try:
                views[scope] = self._indexes.view(scope)
            except KeyError:  # deleted since it was listed
                continue
        return views

    def _projects(
        self, rules: RuleSet, scopes: list[str], now: datetime
    ) -> Iterator[tuple[str, list[_Candidate], frozenset[str]]]:
        """Each project with candidates: them, and the sources that have a page of it."""
        condition = self._condition(rules, scopes, now)
        if condition is None:
            return
        columns = [getattr(File, name) for name in FACT_FIELDS]
        statement = (
            select(File.id, Project.source, Project.name, *columns)
            .join(File.project)
            .where(condition)
            .order_by(Project.name, File.filename, Project.source)
        )
        by_project: dict[str, list[_Candidate]] = {}
        with self._database.unit_of_work() as db:
            for file_id, source, project, *values in db.execute(statement):
                candidate = _Candidate(file_id, source, project, FileFacts(*values))
                by_project.setdefault(project, []).append(candidate)
            names = list(by_project)
            holders: dict[str, set[str]] = {}
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                found = db.execute(
                    select(Project.source, Project.name).where(Project.name.in_(chunk))
                )
                for source, name in found:
                    holders.setdefault(name, set()).add(source)
        for project, candidates in by_project.items():
            yield project, candidates, frozenset(holders.get(project, ()))

    def _condition(
        self, rules: RuleSet, scopes: list[str], now: datetime
    ) -> ColumnElement[bool] | None:
        """Which files may be held at all: None when no rule or setting holds any."""
        conditions: list[ColumnElement[bool]] = []
        longest = max(self._guard.cooldown(scope) for scope in scopes) if scopes else None
        young = []
        if longest:
            young.append(File.upload_time > now - longest)
        if self._cutoff is not None:
            young.append(File.upload_time > self._cutoff)
        if young:
            recent = or_(*young)
            if not self._hold_private:
                recent = and_(recent, File.upstream_url.is_not(None))
            conditions.append(recent)
        blocked = sorted(
            {
                read_block(rule.subject)[0]
                for rule in rules.rules
                if rule.kind == BLOCK_RULE and (rule.index is None or rule.index in scopes)
            }
        )
        if blocked:
            conditions.append(Project.name.in_(blocked))
        return or_(*conditions) if conditions else None


def _private(source: str) -> bool:
    return source.startswith(PRIVATE_PREFIX)
