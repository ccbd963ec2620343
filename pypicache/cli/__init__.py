"""The ``pypicache`` command: serve the index, manage users, tokens and private projects."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from pypicache.cache.indexes import MAIN
from pypicache.cli.accounts import (
    project_delete,
    project_grant,
    project_merge,
    project_yank,
    token_create,
    token_list,
    token_revoke,
    user_add,
    user_list,
    user_passwd,
    user_role,
)
from pypicache.cli.cache import REQUIREMENTS, export_cache, import_cache, target_options, warm_cache
from pypicache.cli.common import config_options
from pypicache.cli.indexes import (
    index_create,
    index_delete,
    index_list,
    index_push,
    index_show,
    index_update,
)
from pypicache.cli.maintenance import gc_command, quarantined_command, verify_command
from pypicache.cli.policy import (
    policy_allow_only,
    policy_allow_release,
    policy_block,
    policy_list,
    policy_revoke,
    policy_unblock,
    project_status,
)
from pypicache.cli.serve import serve_command
from pypicache.errors import PypicacheError, SettingsError
from pypicache.policy.rules import STATUSES
from pypicache.times import BadTime, parse_duration

DEFAULT_PORT = 6543


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SettingsError as exc:
        print(f"pypicache: bad setting {exc}", file=sys.stderr)
        return 2
    except PypicacheError as exc:
        print(f"pypicache: {exc}", file=sys.stderr)
        return 1


def _names(value: str) -> list[str]:
    """A comma-separated list of names (empty: none)."""
    return [name.strip() for name in value.split(",") if name.strip()]


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except BadTime as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cooldown(value: str) -> timedelta | str:
    """A duration, or "default": pypicache.cooldown's again."""
    return "default" if value.strip() == "default" else _duration(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pypicache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the index (built-in defaults without --config)")
    config_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    serve.add_argument(
        "--threads", type=int, default=16, help="request threads (each download holds one)"
    )
    serve.add_argument("--upstream", metavar="URL", help="upstream simple index URL, or 'none'")
    serve.add_argument("--changelog", metavar="URL", help="upstream changelog URL, or 'none'")
    serve.add_argument("--follow-interval", metavar="SECONDS", help="changelog poll interval")
    serve.set_defaults(run=serve_command)

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True
    )
    add = user.add_parser("add", help="create a user (asks for a password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage everything")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(run=user_add)
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(run=user_passwd)
    role = user.add_parser("role", help="make a user admin or uploader")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "uploader"])
    role.set_defaults(run=user_role)
    user.add_parser("list", help="list users").set_defaults(run=user_list)

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token for a user; it is shown once")
    create.add_argument("name")
    create.add_argument("--description")
    create.add_argument("--index", help="the one index the token reads and uploads to")
    create.set_defaults(run=token_create)
    listing = token.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.add_argument("name", nargs="?")
    listing.set_defaults(run=token_list)
    revoke = token.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=token_revoke)

    project = commands.add_parser("project", help="manage private projects").add_subparsers(
        dest="action", required=True
    )
    merge = project.add_parser("merge-upstream", help="list upstream files too, or stop")
    merge.add_argument("project")
    merge.add_argument("state", choices=["on", "off"])
    merge.set_defaults(run=project_merge)
    grant = project.add_parser("grant", help="let a user upload to a private project")
    grant.add_argument("project")
    grant.add_argument("user")
    grant.set_defaults(run=project_grant)
    for name, help_text in (("yank", "yank a file or a version"), ("unyank", "undo a yank")):
        yank = project.add_parser(name, help=help_text)
        yank.add_argument("project")
        yank.add_argument("target", metavar="FILENAME|VERSION")
        if name == "yank":
            yank.add_argument("--reason")
        yank.set_defaults(run=project_yank, yanked=name == "yank")
    remove = project.add_parser("delete", help="delete a private file, or the whole project")
    remove.add_argument("project")
    remove.add_argument("filename", nargs="?")
    remove.set_defaults(run=project_delete)
    for command in project.choices.values():
        command.add_argument(
            "--index", default=MAIN, help="the index the private project is in (default main)"
        )
    status = project.add_parser(
        "status", help="set a project's status (PEP 792), private or upstream, audited"
    )
    status.add_argument("project")
    status.add_argument("status", choices=["active", *STATUSES])
    status.add_argument("--reason", help="shown on the project's pages (optional)")
    status.add_argument("--index", help="only in this index (default: every index)")
    status.set_defaults(run=project_status)

    index = commands.add_parser("index", help="manage named indexes").add_subparsers(
        dest="action", required=True
    )
    for name, help_text in (("create", "create an index"), ("update", "change an index")):
        change = index.add_parser(name, help=help_text)
        change.add_argument("name")
        change.add_argument(
            "--bases",
            type=_names,
            help="upstream and index names, in the order they are asked (comma-separated)",
        )
        change.add_argument("--description")
        change.add_argument(
            "--uploaders",
            type=_names,
            help="users who may upload besides admins (comma-separated; empty: admins only)",
        )
        change.add_argument(
            "--cooldown",
            type=_cooldown if name == "update" else _duration,
            metavar="DURATION",
            help="minimum age of upstream files here (7d, 36h, P7D; 0: none"
            + ("; default: pypicache.cooldown's)" if name == "update" else ")"),
        )
        change.add_argument(
            "--read-auth",
            action=argparse.BooleanOptionalAction,
            help="reads need a login, whatever pypicache.read_auth says (--no-read-auth: not)",
        )
        change.set_defaults(run=index_create if name == "create" else index_update)
    index.add_parser("list", help="list the indexes").set_defaults(run=index_list)
    show = index.add_parser("show", help="an index's bases, uploaders and projects")
    show.add_argument("name")
    show.set_defaults(run=index_show)
    drop = index.add_parser("delete", help="delete an index")
    drop.add_argument("name")
    drop.add_argument(
        "--force", action="store_true", help="with its private projects, and from others' bases"
    )
    drop.set_defaults(run=index_delete)
    push = index.add_parser(
        "push", help="copy a release's stored files from one index into another's projects"
    )
    push.add_argument("source", metavar="SRC")
    push.add_argument("dest", metavar="DEST")
    push.add_argument("release", metavar="PROJECT==VERSION")
    push.set_defaults(run=index_push)

    policy = commands.add_parser(
        "policy", help="supply-chain rules: blocks, allowlists, releases let through"
    ).add_subparsers(dest="action", required=True)
    block = policy.add_parser("block", help="hold back a project, or some of its versions")
    block.add_argument("requirement", metavar="REQUIREMENT", help="PEP 508: evilpkg, pkg==1.2")
    block.set_defaults(run=policy_block)
    unblock = policy.add_parser("unblock", help="end the blocks of exactly this requirement")
    unblock.add_argument("requirement", metavar="REQUIREMENT")
    unblock.set_defaults(run=policy_unblock)
    allow_only = policy.add_parser(
        "allow-only", help="serve only upstream projects matching these patterns"
    )
    allow_only.add_argument("patterns", metavar="PATTERN", nargs="+")
    allow_only.set_defaults(run=policy_allow_only)
    release = policy.add_parser(
        "allow-release", help="let a release through the cooldown and the cutoff (break-glass)"
    )
    release.add_argument("release", metavar="PROJECT==VERSION")
    release.set_defaults(run=policy_allow_release)
    for command in (block, allow_only, release):
        command.add_argument(
            "--reason", required=command is not allow_only, help="why: kept in the audit log"
        )
        command.add_argument("--until", metavar="RFC3339", help="the rule ends by itself then")
    for command in (block, unblock, allow_only, release):
        command.add_argument("--index", help="the one index it applies to (default: every one)")
    listing = policy.add_parser("list", help="the cooldown, the cutoff and every rule in force")
    listing.add_argument("--all", action="store_true", help="ended rules too")
    listing.set_defaults(run=policy_list)
    revoke = policy.add_parser("revoke", help="end a rule by its id (policy list shows them)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=policy_revoke)

    warm = commands.add_parser(
        "warm", help="fetch everything a requirements file resolves to (by pip) into the cache"
    )
    warm.add_argument(
        *REQUIREMENTS, dest="requirements", metavar="FILE", required=True, help="pip's format"
    )
    target_options(warm)
    warm.set_defaults(run=warm_cache)
    export = commands.add_parser("export", help="write cached projects to a bundle (a tar file)")
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        *REQUIREMENTS,
        dest="requirements",
        metavar="FILE",
        help="warm this requirements file, then export exactly the files pip chose",
    )
    chosen.add_argument(
        "--project", action="append", metavar="NAME", help="every cached file of NAME (repeatable)"
    )
    target_options(export)
    export.add_argument("out", metavar="OUT.tar")
    export.set_defaults(run=export_cache)
    load = commands.add_parser("import", help="add the projects and files of a bundle")
    load.add_argument("bundle", metavar="BUNDLE.tar")
    load.set_defaults(run=import_cache)
    for command in (warm, export, load):
        config_options(command)

    gc = commands.add_parser(
        "gc", help="evict the least recently used cached files over pypicache.cache_max_bytes"
    )
    config_options(gc)
    gc.add_argument("--dry-run", action="store_true", help="show what would be evicted, only")
    gc.set_defaults(run=gc_command)
    verify = commands.add_parser("verify", help="rehash every stored blob against the database")
    config_options(verify)
    verify.add_argument(
        "--repair",
        action="store_true",
        help="remove corrupt and orphaned blobs and stale temp files; refetch on demand",
    )
    verify.set_defaults(run=verify_command)
    quarantined = commands.add_parser(
        "quarantined", help="list the files removed upstream whose bytes are kept aside"
    )
    config_options(quarantined)
    quarantined.set_defaults(run=quarantined_command)

    for sub in (user, token, project, index, policy):
        for command in sub.choices.values():
            config_options(command)
    return parser
