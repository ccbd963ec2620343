"""What the rules hold back right now, for the admin page and the metric.

Judging every cached file would read the whole files table; only files a rule can
hold are read: uploaded within the longest cooldown in force or after the cutoff,
or of a project a block names.  Each is then judged as each index judges it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from pypicache.cache.indexes import MAIN
from pypicache.db import Database
from pypicache.filefacts import FACT_FIELDS, FileFacts
from pypicache.models import PRIVATE_PREFIX, File, Project, utcnow
from pypicache.policy.guard import Guard
from pypicache.settings import Settings

# Rows a listing shows; the counts cover every held file.
SHOWN = 1_000
# Candidate files read at most: a cache where more are young is a bigger problem.
CANDIDATES = 100_000
# Seconds the metric's counts are reused: a scrape every few seconds reads once.
METRIC_REUSE = 30.0


@dataclass(frozen=True)
class HeldFile:
    index: str
    project: str
    filename: str
    kind: str  # cooldown, cutoff or block
    reason: str  # follows the filename
    until: datetime | None


@dataclass(frozen=True)
class HeldListing:
    files: list[HeldFile]  # the first SHOWN, soonest to mature first
    total: int  # (index, file) pairs held
    by_kind: dict[str, int] = field(default_factory=dict)  # distinct files, per kind


class HeldFiles:
    """Lists the files held back in every index, and counts them by kind."""

    def __init__(
        self,
        database: Database,
        guard: Guard,
        settings: Settings,
        index_names: Callable[[], list[str]],
    ) -> None:
        self._database = database
        self._guard = guard
        self._cutoff = settings.cutoff
        self._index_names = index_names
        self._counted: tuple[float, dict[str, int]] | None = None
        self._lock = threading.Lock()

    def listing(self, shown: int = SHOWN) -> HeldListing:
        scopes = [MAIN, *(name for name in self._index_names() if name != MAIN)]
        candidates = self._candidates(scopes)
        held: list[HeldFile] = []
        kinds: dict[str, set[tuple[str, str]]] = {}
        for (source, project), files in candidates.items():
            own = source[len(PRIVATE_PREFIX) :] if source.startswith(PRIVATE_PREFIX) else None
            for scope in scopes if own is None else [own]:
                for facts, hold in self._guard.holds(scope, project, files):
                    held.append(
                        HeldFile(scope, project, facts.filename, hold.kind, hold.reason, hold.until)
                    )
                    kinds.setdefault(hold.kind, set()).add((source, facts.filename))
        held.sort(key=lambda h: (h.until is None, h.until or datetime.min, h.project, h.index))
        counts = {kind: len(found) for kind, found in sorted(kinds.items())}
        return HeldListing(held[:shown], len(held), counts)

    def counts(self) -> dict[str, int]:
        """Distinct files held, by kind; reused for METRIC_REUSE seconds."""
        with self._lock:
            now = time.monotonic()
            if self._counted is None or now - self._counted[0] > METRIC_REUSE:
                self._counted = (now, self.listing(shown=0).by_kind)
            return self._counted[1]

    def _candidates(self, scopes: list[str]) -> dict[tuple[str, str], list[FileFacts]]:
        rules = self._guard.rules.current()
        longest = max((self._guard.cooldown(s) for s in scopes), default=timedelta(0))
        conditions = []
        if longest:
            conditions.append(File.upload_time > utcnow() - longest)
        if self._cutoff is not None:
            conditions.append(File.upload_time > self._cutoff)
        blocked = rules.blocked_projects()
        if blocked:
            conditions.append(Project.name.in_(sorted(blocked)))
        if not conditions:
            return {}
        columns = [getattr(File, name) for name in FACT_FIELDS]
        query = (
            select(Project.source, Project.name, *columns)
            .join(Project, File.project_id == Project.id)
            .where(or_(*conditions))
            .limit(CANDIDATES)
        )
        found: dict[tuple[str, str], list[FileFacts]] = {}
        with self._database.unit_of_work() as db:
            for source, name, *values in db.execute(query):
                found.setdefault((source, name), []).append(FileFacts(*values))
        return found
