"""Supply-chain rules in the browser: the settings and rules in force, what they hold back,
and forms to block, let a release through, set an allowlist and end a rule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import see_other
from pypicache.errors import PypicacheError
from pypicache.policy.rules import ALLOW_ONLY, ALLOW_RELEASE, BLOCK, PolicyProblem, read_pattern
from pypicache.times import parse_moment
from pypicache.web.security import ADMIN

# What a form field may hold before it is read at all: a rule's subject and reason are
# bounded by the rules themselves; this bounds the work of reading them.
FIELD_LENGTH = 4_000


def read_patterns(text: str) -> list[str]:
    """The patterns of an allowlist as a form gives them (commas or whitespace between
    them), every one checked before any is stored."""
    found = [read_pattern(part) for part in text.replace(",", " ").split()]
    if not found:
        raise PolicyProblem("name at least one pattern of project names, such as acme-*")
    return found


@view_config(
    route_name="admin_policy",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/policy.jinja2",
)
def policy(request: Request) -> dict[str, Any]:
    services = request.services
    settings = services.settings
    return {
        "section": "policy",
        "cooldown": settings.cooldown,
        "cutoff": settings.cutoff,
        "exempt": settings.cooldown_exempt,
        "hold_private": settings.cooldown_private,
        "indexes": services.indexes.all(),
        "rules": services.guard.rules.list(),
        "held": services.held.listing(),
    }


@view_config(route_name="admin_policy_block", request_method="POST", permission=ADMIN)
def block(request: Request) -> Response:
    return _add(request, BLOCK, [_field(request, "requirement")], "Blocked")


@view_config(route_name="admin_policy_allow_release", request_method="POST", permission=ADMIN)
def allow_release(request: Request) -> Response:
    return _add(request, ALLOW_RELEASE, [_field(request, "release")], "Let through")


@view_config(route_name="admin_policy_allow_only", request_method="POST", permission=ADMIN)
def allow_only(request: Request) -> Response:
    try:
        patterns = read_patterns(_field(request, "patterns"))
    except PypicacheError as exc:
        request.session.flash(f"Not made: {exc}", "error")
        return see_other(request, "admin_policy")
    return _add(request, ALLOW_ONLY, patterns, "Allowlisted", default_reason="allowlist")


@view_config(route_name="admin_policy_revoke", request_method="POST", permission=ADMIN)
def revoke(request: Request) -> Response:
    value = request.matchdict["rule_id"]
    try:
        if not value.isdigit() or len(value) > 18:
            raise PolicyProblem(f"there is no rule {value[:20]!r}")
        rule = request.services.guard.rules.revoke(int(value), actor=request.identity.name)
    except PypicacheError as exc:
        request.session.flash(f"Not ended: {exc}", "error")
    else:
        request.session.flash(f"Rule {rule.id} ({rule.kind} {rule.subject}) ended.", "ok")
    return see_other(request, "admin_policy")


def _add(
    request: Request, kind: str, subjects: list[str], done: str, default_reason: str = ""
) -> Response:
    """Make one rule per subject, all of them checked first: a refusal stores nothing."""
    services = request.services
    index = _field(request, "index") or None
    reason = _field(request, "reason") or default_reason
    try:
        until = _until(_field(request, "until"))
        if index is not None:
            services.indexes.info(index)  # IndexProblem when there is none of that name
        made = [
            services.guard.rules.add(
                kind,
                subject,
                reason=reason,
                actor=request.identity.name,
                index=index,
                until=until,
            )
            for subject in subjects
        ]
    except PypicacheError as exc:
        request.session.flash(f"Not made: {exc}", "error")
    else:
        where = f"on index {index}" if index else "on every index"
        names = ", ".join(rule.subject for rule in made)
        ids = ", ".join(str(rule.id) for rule in made)
        request.session.flash(f"{done} {names} {where} (rule {ids}).", "ok")
    return see_other(request, "admin_policy")


def _field(request: Request, name: str) -> str:
    value = request.POST.get(name, "")
    if not isinstance(value, str):  # a file where text belongs
        return ""
    return value[:FIELD_LENGTH].strip()


def _until(value: str) -> datetime | None:
    """The form's "until": empty, or an RFC 3339 time such as 2026-12-01T00:00:00Z."""
    if not value:
        return None
    try:
        return parse_moment(value)
    except PypicacheError as exc:
        raise PolicyProblem(f"until: {exc}") from None
