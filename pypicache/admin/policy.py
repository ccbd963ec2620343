"""The supply-chain rules: what is in force, what it holds back, and making and ending rules."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import see_other
from pypicache.errors import PypicacheError
from pypicache.policy.rules import ALLOW_ONLY, ALLOW_RELEASE, BLOCK
from pypicache.times import format_duration, format_moment, parse_moment
from pypicache.web.security import ADMIN


@view_config(
    route_name="admin_policy",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/policy.jinja2",
)
def policy(request: Request) -> dict[str, Any]:
    services = request.services
    settings = services.settings
    indexes = services.indexes.all()
    return {
        "section": "policy",
        "cooldown": format_duration(settings.cooldown) if settings.cooldown else "off",
        "cutoff": format_moment(settings.cutoff) if settings.cutoff else "none",
        "exempt": settings.cooldown_exempt,
        "cooldown_private": settings.cooldown_private,
        "index_cooldowns": [
            (i.name, format_duration(i.cooldown) if i.cooldown else "off")
            for i in indexes
            if i.cooldown is not None
        ],
        "indexes": [i.name for i in indexes],
        "rules": services.guard.rules.list(),
        "held": services.held.listing(),
        "moment": format_moment,
    }


@view_config(route_name="admin_policy_rule", request_method="POST", permission=ADMIN)
def make_rule(request: Request) -> Response:
    """A block, an allowlist or a release let through, as ``pypicache policy`` makes them."""
    kind = request.matchdict["kind"]
    form = request.POST
    index = form.get("index", "").strip() or None
    try:
        if kind not in (BLOCK, ALLOW_ONLY, ALLOW_RELEASE):
            raise PypicacheError(f"{kind!r:.40} is no kind of rule made here")
        until_text = form.get("until", "").strip()
        until = parse_moment(until_text) if until_text else None
        if index is not None:
            request.services.indexes.info(index)  # IndexProblem when there is none
        subject = form.get("subject", "")
        subjects = subject.split() if kind == ALLOW_ONLY else [subject]
        reason = form.get("reason", "") or ("allowlist" if kind == ALLOW_ONLY else "")
        made = [
            request.services.guard.rules.add(
                kind, subject, reason=reason, actor=request.identity.name, index=index, until=until
            )
            for subject in subjects
        ]
    except PypicacheError as exc:
        request.session.flash(f"Not made: {exc}", "error")
    else:
        names = ", ".join(f"{rule.id} ({rule.kind} {rule.subject})" for rule in made)
        request.session.flash(f"Made rule {names}; every host applies it within 2 s.", "ok")
    return see_other(request, "admin_policy")


@view_config(route_name="admin_policy_revoke", request_method="POST", permission=ADMIN)
def revoke(request: Request) -> Response:
    try:
        rule_id = int(request.matchdict["rule_id"])
        rule = request.services.guard.rules.revoke(rule_id, actor=request.identity.name)
    except (ValueError, PypicacheError) as exc:
        request.session.flash(f"Not ended: {exc}", "error")
    else:
        request.session.flash(f"Ended rule {rule.id} ({rule.kind} {rule.subject}).", "ok")
    return see_other(request, "admin_policy")
