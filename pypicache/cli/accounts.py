"""``user``, ``token``, ``project``: accounts and private projects, straight to the database."""

from __future__ import annotations

import argparse
import getpass
import sys

from pypicache.cli.common import ADMIN_ACTOR, command_services
from pypicache.errors import SettingsError


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise SettingsError("password: the two passwords differ")
    return first


def user_add(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        accounts.add_user(args.name, _password(args), admin=args.admin)
    print(f"user {args.name} added ({'admin' if args.admin else 'uploader'})")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        accounts.set_password(args.name, _password(args))
    print(f"password of {args.name} changed")
    return 0


def user_role(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        accounts.set_admin(args.name, args.role == "admin")
    print(f"{args.name} is now {args.role}")
    return 0


def user_list(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        for name, is_admin, created in accounts.users():
            print(f"{name}\t{'admin' if is_admin else 'uploader'}\t{created:%Y-%m-%d %H:%M}")
    return 0


def token_create(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        if args.index is not None:
            services.indexes.info(args.index)  # refused when there is no such index
        token = accounts.create_token(args.name, args.description, index=args.index)
    print(token)
    print(f"(a new token for {args.name}; it is not shown again)", file=sys.stderr)
    return 0


def token_list(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        for t in accounts.tokens(args.name):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
            where = f"index {t.index}" if t.index else "every index"
            print(f"{t.id}\t{t.user}\t{t.prefix}…\t{state}\t{used}\t{where}\t{t.description or ''}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        accounts = services.accounts
        accounts.revoke_token(args.id)
    print(f"token {args.id} revoked")
    return 0


def project_merge(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        private = services.private
        private.set_merge_upstream(
            args.project, args.state == "on", actor=ADMIN_ACTOR, index=args.index
        )
    print(f"{args.project}: upstream files {'merged' if args.state == 'on' else 'hidden'}")
    return 0


def project_grant(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        private = services.private
        private.grant(args.project, args.user, actor=ADMIN_ACTOR, index=args.index)
    print(f"{args.user} may upload to {args.project}")
    return 0


def project_yank(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        private = services.private
        files = private.set_yanked(
            args.project,
            args.target,
            yanked=args.yanked,
            reason=getattr(args, "reason", None),
            actor=ADMIN_ACTOR,
            index=args.index,
        )
    for filename in files:
        print(f"{'yanked' if args.yanked else 'unyanked'} {filename}")
    return 0


def project_delete(args: argparse.Namespace) -> int:
    with command_services(args) as services:
        private = services.private
        if args.filename:
            private.delete_file(args.project, args.filename, actor=ADMIN_ACTOR, index=args.index)
        else:
            private.delete_project(args.project, actor=ADMIN_ACTOR, index=args.index)
    print(f"deleted {args.filename or args.project}")
    return 0
