"""``index``: named indexes, their bases and uploaders, straight to the database."""

from __future__ import annotations

import argparse

from sqlalchemy import func, select

from pypicache.cache.indexes import IndexInfo, private_source
from pypicache.cli.common import ADMIN_ACTOR, command_services
from pypicache.errors import IndexProblem
from pypicache.models import Project
from pypicache.times import format_duration


def index_create(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        info = services.indexes.create(
            args.name,
            bases=args.bases or [],
            description=args.description,
            uploaders=args.uploaders,
            actor=ADMIN_ACTOR,
            read_auth=bool(args.read_auth),
            cooldown=args.cooldown,
        )
    print(f"created index {info.name}: {_describe(info)}")
    return 0


def index_update(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        info = services.indexes.update(
            args.name,
            bases=args.bases,
            description=args.description,
            uploaders=args.uploaders,
            read_auth=args.read_auth,
            cooldown=args.cooldown,
            actor=ADMIN_ACTOR,
        )
    print(f"updated index {info.name}: {_describe(info)}")
    return 0


def index_list(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        for info in services.indexes.all():
            print(f"{info.name:20} {_describe(info)}")
    return 0


def index_show(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        info = services.indexes.info(args.name)
        with services.database.unit_of_work() as db:
            projects = list(
                db.scalars(
                    select(Project.name)
                    .where(Project.source == private_source(info.name))
                    .order_by(Project.name)
                )
            )
            count = db.scalar(
                select(func.count())
                .select_from(Project)
                .where(Project.source == private_source(info.name))
            )
    print(f"index        {info.name}")
    print(f"description  {info.description or ''}")
    print(f"bases        {_bases(info)}")
    print(f"uploaders    {_uploaders(info)}")
    print(f"reads        {'need a login' if info.read_auth else 'as pypicache.read_auth says'}")
    print(f"cooldown     {_cooldown(info)}")
    print(f"projects     {count}: {', '.join(projects)}" if projects else "projects     none")
    return 0


def index_delete(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        deleted = services.indexes.delete(args.name, force=args.force, actor=ADMIN_ACTOR)
    print(f"deleted index {args.name}" + (f" and {deleted} private projects" if deleted else ""))
    return 0


def _bases(info: IndexInfo) -> str:
    if info.bases is None:
        return "every upstream, in priority order"
    return ", ".join(info.bases) or "none"


def _uploaders(info: IndexInfo) -> str:
    if info.uploaders is None:
        return "any user"
    return "admins and " + ", ".join(info.uploaders) if info.uploaders else "admins only"


def _cooldown(info: IndexInfo) -> str:
    if info.cooldown is None:
        return "as pypicache.cooldown says"
    return format_duration(info.cooldown) if info.cooldown else "none"


def _describe(info: IndexInfo) -> str:
    reads = "; reads need a login" if info.read_auth else ""
    cooldown = f"; cooldown {_cooldown(info)}" if info.cooldown is not None else ""
    return f"bases {_bases(info)}; uploaders {_uploaders(info)}{reads}{cooldown}"


def index_push(args: argparse.Namespace) -> int:
    project, equals, version = args.release.partition("==")
    if not equals or not project or not version:
        raise IndexProblem(f"expected PROJECT==VERSION, got {args.release!r}")
    with command_services(args) as services:
        pushed = services.private.push(args.source, args.dest, project, version, actor=ADMIN_ACTOR)
    for filename in pushed.copied:
        print(f"pushed {filename}")
    for filename in pushed.present:
        print(f"already there {filename}")
    return 0
