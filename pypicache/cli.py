"""The ``pypicache`` command: serve the index, manage users, tokens and private projects."""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
from collections.abc import Sequence

from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import Engine

from . import db
from .accounts import Accounts
from .errors import PypicacheError, SettingsError
from .index import IndexService
from .private import PrivatePackages
from .settings import Settings
from .storage import LocalBlobStore

DEFAULT_PORT = 6543
LOG_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s"
ADMIN_ACTOR = "cli"


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pypicache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the index (built-in defaults without --config)")
    _config_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    serve.add_argument(
        "--threads", type=int, default=16, help="request threads (each download holds one)"
    )
    serve.add_argument("--upstream", metavar="URL", help="upstream simple index URL, or 'none'")
    serve.add_argument("--changelog", metavar="URL", help="upstream changelog URL, or 'none'")
    serve.add_argument("--follow-interval", metavar="SECONDS", help="changelog poll interval")
    serve.set_defaults(run=_serve)

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True
    )
    add = user.add_parser("add", help="create a user (asks for a password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may manage everything")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(run=_user_add)
    passwd = user.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(run=_user_passwd)
    role = user.add_parser("role", help="make a user admin or uploader")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "uploader"])
    role.set_defaults(run=_user_role)
    user.add_parser("list", help="list users").set_defaults(run=_user_list)

    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token for a user; it is shown once")
    create.add_argument("name")
    create.add_argument("--description")
    create.set_defaults(run=_token_create)
    listing = token.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.add_argument("name", nargs="?")
    listing.set_defaults(run=_token_list)
    revoke = token.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_token_revoke)

    project = commands.add_parser("project", help="manage private projects").add_subparsers(
        dest="action", required=True
    )
    merge = project.add_parser("merge-upstream", help="list upstream files too, or stop")
    merge.add_argument("project")
    merge.add_argument("state", choices=["on", "off"])
    merge.set_defaults(run=_project_merge)
    grant = project.add_parser("grant", help="let a user upload to a private project")
    grant.add_argument("project")
    grant.add_argument("user")
    grant.set_defaults(run=_project_grant)
    for name, help_text in (("yank", "yank a file or a version"), ("unyank", "undo a yank")):
        yank = project.add_parser(name, help=help_text)
        yank.add_argument("project")
        yank.add_argument("target", metavar="FILENAME|VERSION")
        if name == "yank":
            yank.add_argument("--reason")
        yank.set_defaults(run=_project_yank, yanked=name == "yank")
    remove = project.add_parser("delete", help="delete a private file, or the whole project")
    remove.add_argument("project")
    remove.add_argument("filename", nargs="?")
    remove.set_defaults(run=_project_delete)

    for sub in (user, token, project):
        for command in sub.choices.values():
            _config_options(command)
    return parser


def _config_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", metavar="INI", help="read [app:main] settings from this file")
    command.add_argument("--data-dir", metavar="DIR", help="where the database and files live")


def _settings(args: argparse.Namespace, **overrides: str | None) -> Settings:
    if args.config:
        setup_logging(args.config)
        ini = get_appsettings(args.config, name="main")
    else:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
        ini = {}
    return Settings.from_mapping(ini, overrides={"pypicache.data_dir": args.data_dir, **overrides})


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    import waitress

    from . import make_app  # the web stack only for the one command that serves

    if not args.config:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = _settings(
        args,
        **{
            "pypicache.upstream_url": args.upstream,
            "pypicache.changelog_url": args.changelog,
            "pypicache.follow_interval": args.follow_interval,
        },
    )
    app = make_app(settings)
    upstream = settings.upstream_url or "none"
    print(
        f"pypicache serving http://{args.host}:{args.port}/simple/ "
        f"(upstream {upstream}, data in {settings.data_dir})",
        flush=True,
    )
    # systemd and container runtimes stop with SIGTERM: shut down as on Ctrl-C, so the
    # follower hands over its lease and queued log lines are written.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        waitress.serve(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads,
            ident="pypicache",
            channel_timeout=300,
            # Uploads up to the limit, plus room for the form around the file.
            max_request_body_size=settings.max_upload_size + 1024 * 1024,
        )
    finally:
        app.close()
    return 0


# -- users, tokens and projects: straight to the database -------------------------------------


def _tools(args: argparse.Namespace) -> tuple[Accounts, PrivatePackages, Engine]:
    """The account and private-package services on the configured database."""
    settings = _settings(args)
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade(settings.database_url)
    engine = db.get_engine(settings.database_url)
    factory = db.get_session_factory(engine)
    index = IndexService(
        settings, factory, LocalBlobStore(settings.blob_dir, settings.tmp_dir), None
    )
    return Accounts(factory), PrivatePackages(settings, factory, index), engine


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise SettingsError("password: the two passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        accounts.add_user(args.name, _password(args), admin=args.admin)
    finally:
        engine.dispose()
    print(f"user {args.name} added ({'admin' if args.admin else 'uploader'})")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        accounts.set_password(args.name, _password(args))
    finally:
        engine.dispose()
    print(f"password of {args.name} changed")
    return 0


def _user_role(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        accounts.set_admin(args.name, args.role == "admin")
    finally:
        engine.dispose()
    print(f"{args.name} is now {args.role}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        for name, is_admin, created in accounts.users():
            print(f"{name}\t{'admin' if is_admin else 'uploader'}\t{created:%Y-%m-%d %H:%M}")
    finally:
        engine.dispose()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        token = accounts.create_token(args.name, args.description)
    finally:
        engine.dispose()
    print(token)
    print(f"(a new token for {args.name}; it is not shown again)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        for t in accounts.tokens(args.name):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
            print(f"{t.id}\t{t.user}\t{t.prefix}…\t{state}\t{used}\t{t.description or ''}")
    finally:
        engine.dispose()
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    accounts, _, engine = _tools(args)
    try:
        accounts.revoke_token(args.id)
    finally:
        engine.dispose()
    print(f"token {args.id} revoked")
    return 0


def _project_merge(args: argparse.Namespace) -> int:
    _, private, engine = _tools(args)
    try:
        private.set_merge_upstream(args.project, args.state == "on", actor=ADMIN_ACTOR)
    finally:
        engine.dispose()
    print(f"{args.project}: upstream files {'merged' if args.state == 'on' else 'hidden'}")
    return 0


def _project_grant(args: argparse.Namespace) -> int:
    _, private, engine = _tools(args)
    try:
        private.grant(args.project, args.user, actor=ADMIN_ACTOR)
    finally:
        engine.dispose()
    print(f"{args.user} may upload to {args.project}")
    return 0


def _project_yank(args: argparse.Namespace) -> int:
    _, private, engine = _tools(args)
    try:
        files = private.set_yanked(
            args.project,
            args.target,
            yanked=args.yanked,
            reason=getattr(args, "reason", None),
            actor=ADMIN_ACTOR,
        )
    finally:
        engine.dispose()
    for filename in files:
        print(f"{'yanked' if args.yanked else 'unyanked'} {filename}")
    return 0


def _project_delete(args: argparse.Namespace) -> int:
    _, private, engine = _tools(args)
    try:
        if args.filename:
            private.delete_file(args.project, args.filename, actor=ADMIN_ACTOR)
        else:
            private.delete_project(args.project, actor=ADMIN_ACTOR)
    finally:
        engine.dispose()
    print(f"deleted {args.filename or args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
