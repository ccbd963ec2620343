"""``policy``: the supply-chain rules every host applies, straight to the database."""

from __future__ import annotations

import argparse
from datetime import timedelta

from pypicache.cli.common import ADMIN_ACTOR, command_services
from pypicache.errors import IndexProblem
from pypicache.policy.rules import ALLOW_ONLY, ALLOW_RELEASE, BLOCK, Rule
from pypicache.services import Services
from pypicache.times import BadTime, format_duration, format_moment, parse_moment


def policy_block(args: argparse.Namespace) -> int:
    return _add(args, BLOCK, [args.requirement])


def policy_allow_only(args: argparse.Namespace) -> int:
    return _add(args, ALLOW_ONLY, args.patterns)


def policy_allow_release(args: argparse.Namespace) -> int:
    return _add(args, ALLOW_RELEASE, [args.release])


def policy_unblock(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        _check_index(services, args.index)
        ended = services.guard.rules.unblock(args.requirement, actor=ADMIN_ACTOR, index=args.index)
    for rule in ended:
        print(f"ended rule {rule.id}: {_describe(rule)}")
    return 0


def project_status(args: argparse.Namespace) -> int:
    """PEP 792's status of a project, private or upstream, in one index or in every one."""
    with command_services(args) as services:
        _check_index(services, args.index)
        rule = services.guard.rules.set_status(
            args.project, args.status, actor=ADMIN_ACTOR, reason=args.reason or "", index=args.index
        )
    where = f"index {args.index}" if args.index else "every index"
    if rule is None:
        print(f"{args.project} is active on {where}")
    else:
        print(f"made rule {rule.id}: {_describe(rule)}")
    return 0


def policy_revoke(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        rule = services.guard.rules.revoke(args.id, actor=ADMIN_ACTOR)
    print(f"ended rule {rule.id}: {_describe(rule)}")
    return 0


def policy_list(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        settings = services.settings
        rules = services.guard.rules.list(ended=args.all)
        indexes = services.indexes.all()
    print(f"cooldown     {_duration(settings.cooldown)} (pypicache.cooldown)")
    for info in indexes:
        if info.cooldown is not None:
            print(f"cooldown     {_duration(info.cooldown)} on index {info.name}")
    cutoff = format_moment(settings.cutoff) if settings.cutoff else "none"
    print(f"cutoff       {cutoff} (pypicache.cutoff)")
    if settings.cooldown_exempt:
        print(f"exempt       {' '.join(settings.cooldown_exempt)} (pypicache.cooldown_exempt)")
    if not rules:
        print("no rules" if not args.all else "no rules were ever made")
    for rule in rules:
        ended = ""
        if rule.revoked_at is not None:
            ended = f" [ended {format_moment(rule.revoked_at)} by {rule.revoked_by}]"
        print(f"{rule.id:>5}  {_describe(rule)}{ended}")
    return 0


def _add(args: argparse.Namespace, kind: str, subjects: list[str]) -> int:
    until = None
    if getattr(args, "until", None):
        try:
            until = parse_moment(args.until)
        except BadTime as exc:
            raise IndexProblem(f"--until: {exc}") from None
    reason = args.reason or ("allowlist" if kind == ALLOW_ONLY else "")
    with command_services(args) as services:
        _check_index(services, args.index)
        made = [
            services.guard.rules.add(
                kind, subject, reason=reason, actor=ADMIN_ACTOR, index=args.index, until=until
            )
            for subject in subjects
        ]
    for rule in made:
        print(f"made rule {rule.id}: {_describe(rule)}")
    return 0


def _check_index(services: Services, index: str | None) -> None:
    if index is not None:
        services.indexes.info(index)  # IndexProblem when there is none of that name


def _describe(rule: Rule) -> str:
    where = f"index {rule.index}" if rule.index else "every index"
    until = f" until {format_moment(rule.until)}" if rule.until else ""
    return (
        f"{rule.kind} {rule.subject} on {where}{until}: {rule.reason or 'no reason given'} "
        f"({rule.actor}, {format_moment(rule.created_at)})"
    )


def _duration(value: timedelta) -> str:
    return format_duration(value) if value else "0 (off)"
