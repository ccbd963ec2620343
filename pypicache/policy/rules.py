"""The rules an admin made: blocks, allowlists and releases let through, stored for every host.

Each process reads the rules in force at most every ``RELOAD`` seconds, so a rule made
on one host applies on all of them within that time, and a rule whose ``until``
passed stops applying by itself.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
from sqlalchemy import or_, select

from pypicache.db import Database
from pypicache.errors import PypicacheError
from pypicache.models import AuditEntry, PolicyRule, utcnow
from pypicache.names import normalize_project
from pypicache.upstream.routing import normalize_pattern

BLOCK = "block"
ALLOW_ONLY = "allow-only"
ALLOW_RELEASE = "allow-release"
# PEP 792's statuses an admin sets, each a rule naming a project ("active" ends them).
ACTIVE = "active"
ARCHIVED = "archived"
DEPRECATED = "deprecated"
QUARANTINED = "quarantined"
STATUSES = (ARCHIVED, DEPRECATED, QUARANTINED)
KINDS = (BLOCK, ALLOW_ONLY, ALLOW_RELEASE, *STATUSES)
# Seconds a process applies the rules it read before it reads them again.
RELOAD = 2.0
SUBJECT_LENGTH = 512
REASON_LENGTH = 1_000


class PolicyProblem(PypicacheError):
    """A rule that cannot be made or ended; the message says why."""


@dataclass(frozen=True)
class Rule:
    """A rule in force (or ended, in a listing)."""

    id: int
    kind: str
    index: str | None  # None: every index
    subject: str
    reason: str
    actor: str
    created_at: datetime
    until: datetime | None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def in_force(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.until is None or self.until > now)


@dataclass(frozen=True)
class Block:
    """A block rule, read: the project it names and the versions (None: every one)."""

    rule: Rule
    specifier: SpecifierSet | None

    def matches(self, version: str | None) -> bool:
        """Whether a file of ``version`` is blocked; a version that is no version (or none)
        is, when the rule names versions: a rule must not be dodged by a strange name."""
        if self.specifier is None:
            return True
        try:
            parsed = Version(version or "")
        except InvalidVersion:
            return True
        return self.specifier.contains(parsed, prereleases=True)


def read_reason(text: str) -> str:
    """A rule's reason as it is kept and shown: one line (a 403 body, a log line, a page
    cell), runs of whitespace made one space; control characters are refused, not hidden."""
    reason = " ".join(text.split())
    if not reason:
        raise PolicyProblem("a rule needs a reason (--reason TEXT): the audit log keeps it")
    if len(reason) > REASON_LENGTH:
        raise PolicyProblem(f"a reason is at most {REASON_LENGTH} characters")
    bad = next((c for c in reason if unicodedata.category(c) in _CONTROL), None)
    if bad is not None:
        raise PolicyProblem(f"a reason may not hold the control character U+{ord(bad):04X}")
    return reason


# Control, format (bidirectional overrides among them), surrogate, private-use and
# unassigned: nothing a reader of the reason cannot see.
_CONTROL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def read_block(subject: str) -> tuple[str, SpecifierSet | None]:
    """A PEP 508 requirement as a block names it: a project, maybe versions; nothing else."""
    try:
        requirement = Requirement(subject)
    except InvalidRequirement as exc:
        raise PolicyProblem(f"{subject!r:.80} is no requirement (PEP 508): {exc}") from None
    if requirement.url or requirement.marker or requirement.extras:
        raise PolicyProblem(
            f"{subject!r:.80}: a block names a project and versions only "
            "(no URL, extras or markers)"
        )
    specifier = requirement.specifier
    try:
        name = normalize_project(requirement.name)
    except PypicacheError:
        raise PolicyProblem(f"{subject!r:.80} names no project we could serve") from None
    return name, (specifier if str(specifier) else None)


def read_release(subject: str) -> tuple[str, str]:
    """PROJECT==VERSION, as a release let through names it: (normalized name, version)."""
    name, equals, version = subject.partition("==")
    try:
        if not equals or not name.strip():
            raise InvalidVersion(subject)
        return normalize_project(name.strip()), str(Version(version.strip()))
    except (InvalidVersion, PypicacheError):
        raise PolicyProblem(f"{subject!r:.80} is not PROJECT==VERSION") from None


def read_pattern(subject: str) -> str:
    pattern = normalize_pattern(subject.strip())
    if pattern is None:
        raise PolicyProblem(f"{subject!r:.80} is no pattern of project names")
    return pattern


def _canonical(kind: str, subject: str) -> str:
    """The subject as stored: what ``unblock`` and the listing compare and show."""
    if kind == BLOCK:
        name, specifier = read_block(subject)
        return name + (str(specifier) if specifier is not None else "")
    if kind == ALLOW_RELEASE:
        return "==".join(read_release(subject))
    if kind in STATUSES:
        try:
            return normalize_project(subject.strip())
        except PypicacheError:
            raise PolicyProblem(f"{subject!r:.80} is no project name") from None
    return read_pattern(subject)


@dataclass(frozen=True)
class RuleSet:
    """The rules in force at one moment, read for answering; ``generation`` counts changes."""

    generation: int
    rules: tuple[Rule, ...] = ()
    _blocks: dict[str, tuple[Block, ...]] = field(default_factory=dict)
    _allow: tuple[tuple[Rule, str], ...] = ()
    _releases: dict[tuple[str, str], tuple[Rule, ...]] = field(default_factory=dict)
    _scopes: frozenset[str | None] = frozenset()  # the indexes with rules; None: all have
    _statuses: dict[str, tuple[Rule, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, generation: int, rules: tuple[Rule, ...]) -> RuleSet:
        blocks: dict[str, list[Block]] = {}
        allow: list[tuple[Rule, str]] = []
        releases: dict[tuple[str, str], list[Rule]] = {}
        statuses: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.kind in STATUSES:
                statuses.setdefault(rule.subject, []).append(rule)
            elif rule.kind == BLOCK:
                name, specifier = read_block(rule.subject)
                blocks.setdefault(name, []).append(Block(rule, specifier))
            elif rule.kind == ALLOW_ONLY:
                allow.append((rule, read_pattern(rule.subject)))
            else:
                releases.setdefault(read_release(rule.subject), []).append(rule)
        return cls(
            generation,
            rules,
            {name: tuple(found) for name, found in blocks.items()},
            tuple(allow),
            {key: tuple(found) for key, found in releases.items()},
            frozenset(rule.index for rule in rules),
            {name: tuple(found) for name, found in statuses.items()},
        )

    def any_for(self, scope: str | None) -> bool:
        """Whether any rule applies in ``scope`` (an index's name; None: /u/<upstream>/)."""
        scopes = self._scopes
        return bool(scopes) and (None in scopes or scope in scopes)

    def blocks(self, scope: str | None, project: str) -> tuple[Block, ...]:
        found = self._blocks.get(project)
        if not found:
            return ()
        return tuple(block for block in found if _applies(block.rule, scope))

    def allows(self, scope: str | None, project: str) -> bool:
        """Whether an upstream project may be served in ``scope``: always, without an
        allowlist there; else when one of its patterns matches."""
        patterns = [p for rule, p in self._allow if _applies(rule, scope)]
        return not patterns or any(fnmatchcase(project, p) for p in patterns)

    def release(self, scope: str | None, project: str, version: str | None) -> Rule | None:
        """The grant letting this release through the cooldown and the cutoff, if any."""
        if version is None or not self._releases:
            return None
        try:
            key = (project, str(Version(version)))
        except InvalidVersion:
            return None
        return next((r for r in self._releases.get(key, ()) if _applies(r, scope)), None)

    def status(self, scope: str | None, project: str) -> Rule | None:
        """The status an admin set for ``project`` in ``scope``: the index's own over the
        one for every index, the newest of each."""
        found = [r for r in self._statuses.get(project, ()) if _applies(r, scope)]
        return max(found, key=lambda r: (r.index is not None, r.id), default=None)

    def releases_of(self, scope: str | None, project: str) -> list[Rule]:
        """Every release of ``project`` let through in ``scope``."""
        return [
            rule
            for (name, _version), found in self._releases.items()
            if name == project
            for rule in found
            if _applies(rule, scope)
        ]


def _applies(rule: Rule, scope: str | None) -> bool:
    return rule.index is None or rule.index == scope


class Rules:
    """The rules of the deployment: made, ended and listed here; read for answering."""

    def __init__(self, database: Database, reload: float = RELOAD) -> None:
        self._database = database
        self._reload = reload
        self._lock = threading.Lock()
        self._current = RuleSet(0)
        self._read_at = float("-inf")

    def current(self) -> RuleSet:
        """The rules in force, as read at most ``reload`` seconds ago."""
        if time.monotonic() - self._read_at >= self._reload:
            self._read()
        return self._current

    def _read(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._read_at < self._reload:
                return
            now = utcnow()
            with self._database.unit_of_work() as db:
                rows = db.scalars(
                    select(PolicyRule)
                    .where(PolicyRule.revoked_at.is_(None))
                    .where(or_(PolicyRule.until.is_(None), PolicyRule.until > now))
                    .order_by(PolicyRule.id)
                )
                rules = tuple(_rule(row) for row in rows)
            self._read_at = time.monotonic()
            if rules != self._current.rules:
                self._current = RuleSet.of(self._current.generation + 1, rules)

    def add(
        self,
        kind: str,
        subject: str,
        *,
        reason: str,
        actor: str,
        index: str | None = None,
        until: datetime | None = None,
    ) -> Rule:
        """Make a rule (audited); the subject is checked and stored normalized."""
        if kind not in KINDS:
            raise PolicyProblem(f"{kind!r} is no kind of rule ({', '.join(KINDS)})")
        canonical = _canonical(kind, subject)
        if len(canonical) > SUBJECT_LENGTH:
            raise PolicyProblem(f"a rule's subject is at most {SUBJECT_LENGTH} characters")
        # PEP 792 makes a status's reason optional; every other rule says why.
        reason = "" if kind in STATUSES and not reason.strip() else read_reason(reason)
        now = utcnow()
        if until is not None and until <= now:
            raise PolicyProblem("--until is in the past: the rule would never apply")
        with self._database.unit_of_work() as db:
            row = PolicyRule(
                kind=kind,
                index=index,
                subject=canonical,
                reason=reason,
                actor=actor,
                created_at=now,
                until=until,
            )
            db.add(row)
            db.flush()
            rule = _rule(row)
            db.add(_audit(f"policy-{kind}", rule, actor, now))
        self._read(force=True)
        return rule

    def revoke(self, rule_id: int, *, actor: str) -> Rule:
        """End a rule in force (audited); it stays in the listing of ended rules."""
        now = utcnow()
        with self._database.unit_of_work() as db:
            row = db.get(PolicyRule, rule_id)
            if row is None or not _rule(row).in_force(now):
                raise PolicyProblem(f"there is no rule {rule_id} in force (policy list shows them)")
            row.revoked_at = now
            row.revoked_by = actor
            rule = _rule(row)
            db.add(_audit("policy-revoke", rule, actor, now))
        self._read(force=True)
        return rule

    def set_status(
        self,
        project: str,
        status: str,
        *,
        actor: str,
        reason: str = "",
        index: str | None = None,
    ) -> Rule | None:
        """Give a project a PEP 792 status in that scope (audited), ending the one it had;
        ``active`` only ends it.  Returns the new rule (None for active)."""
        if status != ACTIVE and status not in STATUSES:
            raise PolicyProblem(
                f"{status!r:.40} is no project status ({', '.join((ACTIVE, *STATUSES))})"
            )
        name = _canonical(QUARANTINED, project)
        before = [
            r.id
            for r in self.list()
            if r.kind in STATUSES and r.subject == name and r.index == index
        ]
        rule = None
        if status != ACTIVE:
            rule = self.add(status, name, reason=reason, actor=actor, index=index)
        for rule_id in before:
            self.revoke(rule_id, actor=actor)
        if status == ACTIVE:
            self._audit_active(name, actor, index)
        return rule

    def _audit_active(self, name: str, actor: str, index: str | None) -> None:
        where = f"index {index}" if index else "every index"
        with self._database.unit_of_work() as db:
            db.add(
                AuditEntry(
                    at=utcnow(),
                    action="policy-active",
                    project=name,
                    actor=actor,
                    detail=f"{name} is active again for {where}",
                )
            )

    def unblock(self, subject: str, *, actor: str, index: str | None = None) -> list[Rule]:
        """End the blocks of exactly this requirement in that scope."""
        canonical = _canonical(BLOCK, subject)
        ended = [
            r
            for r in self.list()
            if r.kind == BLOCK and r.subject == canonical and r.index == index
        ]
        if not ended:
            where = f"index {index}" if index else "every index"
            raise PolicyProblem(f"no block of {canonical} for {where} is in force")
        return [self.revoke(rule.id, actor=actor) for rule in ended]

    def list(self, *, ended: bool = False) -> list[Rule]:
        """The rules in force (with ``ended``: every rule ever made), oldest first."""
        now = utcnow()
        with self._database.unit_of_work() as db:
            rules = [_rule(row) for row in db.scalars(select(PolicyRule).order_by(PolicyRule.id))]
        return rules if ended else [rule for rule in rules if rule.in_force(now)]


def _rule(row: PolicyRule) -> Rule:
    return Rule(
        row.id,
        row.kind,
        row.index,
        row.subject,
        row.reason,
        row.actor,
        row.created_at,
        row.until,
        row.revoked_at,
        row.revoked_by,
    )


_NAME = re.compile(r"[a-z0-9._-]*")


def _audit(action: str, rule: Rule, actor: str, at: datetime) -> AuditEntry:
    where = f"index {rule.index}" if rule.index else "every index"
    until = f" until {rule.until.isoformat()}Z" if rule.until else ""
    return AuditEntry(
        at=at,
        action=action,
        project=_NAME.match(rule.subject).group() if rule.kind != ALLOW_ONLY else "",  # type: ignore[union-attr]
        actor=actor,
        detail=f"rule {rule.id} {rule.kind} {rule.subject} for {where}{until}: {rule.reason}",
    )
