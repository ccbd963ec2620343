"""The rules applied when answering: which files of a page are held back, and why.

The cache keeps every file the upstream lists; the guard decides per answer what
is shown, so a rule made or ended changes the very next answer, on every host.
A page's verdict is kept until the page, the rules or the cooldown change, or a
held file matures: the hot path pays a lookup, not a pass over the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from pypicache.cache.index import CachedPage
from pypicache.cache.indexes import MAIN
from pypicache.cache.pagecache import PageCache
from pypicache.cache.rendering import RenderedPage, left_to
from pypicache.errors import FileNotFound, Held, NotAllowed, UploadRejected
from pypicache.filefacts import FileFacts
from pypicache.models import utcnow
from pypicache.policy.rules import ARCHIVED, QUARANTINED, Block, Rule, Rules, RuleSet
from pypicache.settings import Settings
from pypicache.times import format_duration, format_moment

COOLDOWN = "cooldown"
CUTOFF = "cutoff"
BLOCK = "block"
# What a verdict that hides nothing costs the verdict cache.
_SMALL = 200


@dataclass(frozen=True)
class Hold:
    """Why a file is not served, and until when (None: until a rule changes)."""

    kind: str  # cooldown, cutoff or block
    reason: str  # follows the filename: "... is held by the 7d cooldown until ..."
    until: datetime | None


@dataclass(frozen=True)
class _Verdict:
    """What the guard made of one page, and what it depends on."""

    source: CachedPage
    generation: int
    cooldown: timedelta
    until: float | None  # time.time() at which it must be judged again
    entry: CachedPage | None  # None: the project is refused (``refusal`` says why)
    refusal: str | None = None

    def size(self) -> int:
        if self.entry is None or self.entry is self.source:
            return _SMALL
        return self.entry.page.size


@dataclass(frozen=True)
class _Context:
    """What every file of one project is judged against, read once per page."""

    scope: str | None
    project: str
    rules: RuleSet
    cooldown: timedelta
    blocks: tuple[Block, ...]
    exempt: bool  # the project is in pypicache.cooldown_exempt
    now: datetime


class Guard:
    """Decides, for an index (``scope``; None: /u/<upstream>/), what of a page is served.

    The deployment's settings give every index its defaults (``pypicache.cooldown``,
    ``pypicache.cutoff``, ...); an index may set its own cooldown; rules apply to one
    index or to every one.
    """

    def __init__(
        self,
        settings: Settings,
        rules: Rules,
        index_cooldown: Callable[[str], timedelta | None],
        cache_bytes: int,
    ) -> None:
        self.rules = rules
        self._cooldown = settings.cooldown
        self._cutoff = settings.cutoff
        self._exempt = settings.cooldown_exempt
        self._hold_private = settings.cooldown_private
        self._index_cooldown = index_cooldown
        self._verdicts: PageCache[_Verdict] = PageCache(cache_bytes, size=_Verdict.size)

    def cooldown(self, scope: str | None) -> timedelta:
        """The cooldown in force for an index (its own, else the deployment's)."""
        if scope is None:
            return self._cooldown
        own = self._index_cooldown(scope)
        return self._cooldown if own is None else own

    def page(self, scope: str | None, name: str, entry: CachedPage) -> CachedPage:
        """The page as this index serves it: held files left out; NotAllowed for a project
        an allowlist leaves out."""
        rules = self.rules.current()
        cooldown = self.cooldown(scope)
        if not cooldown and self._cutoff is None and not rules.any_for(scope):
            return entry
        key = f"{scope or ''}\0{name}"
        now = datetime.now(UTC)
        stamp = now.timestamp()
        verdict = self._verdicts.get(key)
        if (
            verdict is None
            or verdict.source is not entry
            or verdict.generation != rules.generation
            or verdict.cooldown != cooldown
            or (verdict.until is not None and stamp >= verdict.until)
        ):
            verdict = self._judge(scope, name, entry, rules, cooldown, now.replace(tzinfo=None))
            self._verdicts.put(key, verdict)
        if verdict.entry is None:
            raise NotAllowed(verdict.refusal)
        return verdict.entry

    def admit(self, scope: str | None, project: str, facts: FileFacts, *, private: bool) -> None:
        """Refuse a file (or its metadata) the index's page leaves out: Held (403) with the
        reason, NotAllowed (404) for a project outside an allowlist; ``private``: the
        project is one of an index's own."""
        rules = self.rules.current()
        cooldown = self.cooldown(scope)
        if not cooldown and self._cutoff is None and not rules.any_for(scope):
            return
        if not private:
            refusal = _refusal(rules, scope, project)
            if refusal is not None:
                raise NotAllowed(refusal)
        status = rules.status(scope, project)
        if status is not None and status.kind == QUARANTINED:
            # PEP 792: a quarantined project offers no file for download.
            raise FileNotFound(f"{facts.filename}: {_quarantined(status)}")
        hold = self.hold_of(self._context(scope, project, rules, cooldown, utcnow()), facts)
        if hold is not None:
            raise Held(f"{facts.filename} {hold.reason}")

    def refuse_upload(self, scope: str, project: str) -> None:
        """PEP 792: an archived or quarantined project takes no new file (409, the reason)."""
        status = self.rules.current().status(scope, project)
        if status is None or status.kind not in (ARCHIVED, QUARANTINED):
            return
        why = f": {status.reason}" if status.reason else ""
        raise UploadRejected(
            f"{project} is {status.kind} (rule {status.id}){why}; it takes no new files "
            f"(pypicache project status {project} active ends that)",
            409,
        )

    def context(self, scope: str | None, project: str, now: datetime) -> _Context:
        """What ``hold_of`` judges a project's files in, for an index, at ``now`` (naive
        UTC): the held-files listing asks it once per project and index."""
        return self._context(scope, project, self.rules.current(), self.cooldown(scope), now)

    def hold_of(self, context: _Context, facts: FileFacts) -> Hold | None:
        """Why a file is held in this context, or None: it is served."""
        for block in context.blocks:
            if block.matches(facts.version):
                rule = block.rule
                return Hold(
                    BLOCK,
                    f"is blocked by rule {rule.id} ({rule.subject}): {rule.reason}",
                    rule.until,  # None: until it is revoked
                )
        uploaded = facts.upload_time
        if context.exempt or uploaded is None:
            return None
        if facts.upstream_url is None and not self._hold_private:
            return None  # uploaded here: a private package
        cutoff = self._cutoff
        cooling = context.cooldown and uploaded + context.cooldown > context.now
        if (cutoff is None or uploaded <= cutoff) and not cooling:
            return None
        if context.rules.release(context.scope, context.project, facts.version) is not None:
            return None
        if cutoff is not None and uploaded > cutoff:
            return Hold(
                CUTOFF,
                f"is held: uploaded {format_moment(uploaded)}, after the cutoff "
                f"{format_moment(cutoff)} (pypicache.cutoff)",
                None,
            )
        matures = uploaded + context.cooldown
        where = f" of index {context.scope}" if context.scope not in (None, MAIN) else ""
        return Hold(
            COOLDOWN,
            f"is held by the {format_duration(context.cooldown)} cooldown{where} until "
            f"{format_moment(matures)} (uploaded {format_moment(uploaded)})",
            matures,
        )

    def _context(
        self, scope: str | None, project: str, rules: RuleSet, cooldown: timedelta, now: datetime
    ) -> _Context:
        return _Context(
            scope,
            project,
            rules,
            cooldown,
            rules.blocks(scope, project),
            any(fnmatchcase(project, pattern) for pattern in self._exempt),
            now,
        )

    def _judge(
        self,
        scope: str | None,
        name: str,
        entry: CachedPage,
        rules: RuleSet,
        cooldown: timedelta,
        now: datetime,
    ) -> _Verdict:
        source = entry  # what the verdict was made of; ``entry`` becomes what is shown
        page = entry.page
        if not page.private:
            refusal = _refusal(rules, scope, name)
            if refusal is not None:
                return _Verdict(source, rules.generation, cooldown, None, None, refusal)
        status = rules.status(scope, name)
        if status is not None and page.data.status != QUARANTINED:
            # The admin's status stands for the upstream's, but an upstream quarantine
            # stands whatever an admin said: its files are gone from the cache anyway.
            data = replace(page.data, status=status.kind, status_reason=status.reason or None)
            if status.kind == QUARANTINED:
                data = replace(data, files=[], versions=[])
            page = RenderedPage(data)
            entry = replace(entry, page=page)
            if status.kind == QUARANTINED:
                return _Verdict(source, rules.generation, cooldown, None, entry)
        context = self._context(scope, name, rules, cooldown, now)
        kept: list[FileFacts] = []
        changes: list[datetime] = [r.until for r in _timed(rules, scope, name) if r.until]
        for facts in page.files.values():
            hold = self.hold_of(context, facts)
            if hold is None:
                kept.append(facts)
                continue
            if hold.until is not None:
                changes.append(hold.until)
        until = min(changes).replace(tzinfo=UTC).timestamp() if changes else None
        if len(kept) == len(page.files):
            return _Verdict(source, rules.generation, cooldown, until, entry)
        filtered = replace(entry, page=left_to(page, kept), until=until)
        return _Verdict(source, rules.generation, cooldown, until, filtered)


def _quarantined(status: Rule) -> str:
    why = f": {status.reason}" if status.reason else ""
    return f"{status.subject} is quarantined (rule {status.id}){why}"


def _refusal(rules: RuleSet, scope: str | None, project: str) -> str | None:
    """Why an allowlist leaves ``project`` out, or None when it is let in."""
    if rules.allows(scope, project):
        return None
    where = f"index {scope}" if scope else "this index"
    return f"{project} is not on the allowlist of {where} (pypicache policy allow-only)"


def _timed(rules: RuleSet, scope: str | None, project: str) -> list[Rule]:
    """The rules about ``project`` that end by themselves: the page changes when they do."""
    found: list[Rule] = [block.rule for block in rules.blocks(scope, project)]
    found += rules.releases_of(scope, project)
    return [rule for rule in found if rule.until is not None]
