"""The ``pypicache`` command: serve the index, manage users, tokens and private projects."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pypicache import db
from pypicache.cache.retention import Eviction, Retention
from pypicache.errors import PypicacheError, SettingsError
from pypicache.ops.bundle_export import plan_export, write_bundle
from pypicache.ops.bundle_import import Bundle, ImportReport, import_bundle
from pypicache.ops.progress import Progress, format_bytes
from pypicache.ops.verify import Finding, Kind, Verifier
from pypicache.ops.warm import Target, WarmReport, pip_timeout, warm
from pypicache.services import Services, build_services
from pypicache.settings import Settings
from pypicache.storage.local import BlobStore, make_store

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

    warm = commands.add_parser(
        "warm", help="fetch everything a requirements file resolves to (by pip) into the cache"
    )
    warm.add_argument(
        *_REQUIREMENTS, dest="requirements", metavar="FILE", required=True, help="pip's format"
    )
    _target_options(warm)
    warm.set_defaults(run=_warm)
    export = commands.add_parser("export", help="write cached projects to a bundle (a tar file)")
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        *_REQUIREMENTS,
        dest="requirements",
        metavar="FILE",
        help="warm this requirements file, then export exactly the files pip chose",
    )
    chosen.add_argument(
        "--project", action="append", metavar="NAME", help="every cached file of NAME (repeatable)"
    )
    _target_options(export)
    export.add_argument("out", metavar="OUT.tar")
    export.set_defaults(run=_export)
    load = commands.add_parser("import", help="add the projects and files of a bundle")
    load.add_argument("bundle", metavar="BUNDLE.tar")
    load.set_defaults(run=_import)
    for command in (warm, export, load):
        _config_options(command)

    gc = commands.add_parser(
        "gc", help="evict the least recently used cached files over pypicache.cache_max_bytes"
    )
    _config_options(gc)
    gc.add_argument("--dry-run", action="store_true", help="show what would be evicted, only")
    gc.set_defaults(run=_gc)
    verify = commands.add_parser("verify", help="rehash every stored blob against the database")
    _config_options(verify)
    verify.add_argument(
        "--repair",
        action="store_true",
        help="remove corrupt and orphaned blobs and stale temp files; refetch on demand",
    )
    verify.set_defaults(run=_verify)

    for sub in (user, token, project):
        for command in sub.choices.values():
            _config_options(command)
    return parser


def _config_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", metavar="INI", help="read [app:main] settings from this file")
    command.add_argument("--data-dir", metavar="DIR", help="where the database and files live")


def _settings(args: argparse.Namespace, **overrides: str | None) -> Settings:
    if args.config:
        # Pyramid only to read an ini file: ``pypicache --help`` and flags need none of it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from pyramid.paster import get_appsettings, setup_logging
        setup_logging(args.config)
        ini = get_appsettings(args.config, name="main")
    else:
        logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
        ini = {}
    return Settings.from_mapping(ini, overrides={"pypicache.data_dir": args.data_dir, **overrides})


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace) -> int:
    from waitress.server import create_server

    from pypicache.app import make_wsgi_app  # the web stack only for the one command that serves

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
    # What an operator gets wrong at start-up is one line and status 2, as a bad setting
    # is, and before anything starts: the data dir, then the port.
    problem = _data_dir_problem(settings)
    if problem:
        print(f"pypicache: {problem}", file=sys.stderr)
        return 2
    late = _LateApp()
    try:
        server = create_server(
            late,
            host=args.host,
            port=args.port,
            threads=args.threads,
            ident="pypicache",
            channel_timeout=300,
            # uv keeps dozens of idle pooled connections per client; waitress's default of
            # 100 open connections stalls a fleet of CI installs (see the benchmark).
            connection_limit=2000,
            # Uploads up to the limit, plus room for the form around the file.
            max_request_body_size=settings.max_upload_size + 1024 * 1024,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"pypicache: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 2
    try:
        late.app = app = make_wsgi_app(settings)
    except BaseException:
        server.close()
        raise
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
        server.print_listen("Serving on http://{}:{}")
        server.run()
    finally:
        server.close()
        app.close()
    return 0


class _LateApp:
    """The WSGI app, set once it is built: the port is bound first, so a port in use
    stops ``serve`` before migrations run or threads start."""

    app: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, object], start_response: Callable[..., object]) -> Any:
        assert self.app is not None  # waitress serves only after the app is set
        return self.app(environ, start_response)


def _data_dir_problem(settings: Settings) -> str | None:
    """Why the data dir cannot be used (None: it can): made, and written to, here."""
    try:
        settings.prepare_data_dir()
        local_blobs = () if settings.s3_bucket else (settings.blob_dir,)
        for directory in (settings.data_dir, settings.tmp_dir, settings.index_dir, *local_blobs):
            with tempfile.TemporaryFile(dir=directory):
                pass
    except OSError as exc:
        where = exc.filename or settings.data_dir
        return f"data dir {settings.data_dir} cannot be written: {where}: {exc.strerror or exc}"
    return None


# -- users, tokens and projects: straight to the database -------------------------------------


def _tools(args: argparse.Namespace) -> Services:
    """The services on the configured database and store, none of their threads started.

    Without an upstream: these commands change what is stored and never ask the upstream.
    """
    settings = _settings(args)
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade(settings.database_url)
    return build_services(dataclasses.replace(settings, upstream_url=None))


@contextmanager
def _services(args: argparse.Namespace) -> Iterator[Services]:
    """``_tools`` for one command: closed afterwards."""
    services = _tools(args)
    try:
        yield services
    finally:
        services.close()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password (again): "):
        raise SettingsError("password: the two passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        accounts.add_user(args.name, _password(args), admin=args.admin)
    print(f"user {args.name} added ({'admin' if args.admin else 'uploader'})")
    return 0


def _user_passwd(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        accounts.set_password(args.name, _password(args))
    print(f"password of {args.name} changed")
    return 0


def _user_role(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        accounts.set_admin(args.name, args.role == "admin")
    print(f"{args.name} is now {args.role}")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        for name, is_admin, created in accounts.users():
            print(f"{name}\t{'admin' if is_admin else 'uploader'}\t{created:%Y-%m-%d %H:%M}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        token = accounts.create_token(args.name, args.description)
    print(token)
    print(f"(a new token for {args.name}; it is not shown again)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        for t in accounts.tokens(args.name):
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
            print(f"{t.id}\t{t.user}\t{t.prefix}…\t{state}\t{used}\t{t.description or ''}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    with _services(args) as services:
        accounts = services.accounts
        accounts.revoke_token(args.id)
    print(f"token {args.id} revoked")
    return 0


def _project_merge(args: argparse.Namespace) -> int:
    with _services(args) as services:
        private = services.private
        private.set_merge_upstream(args.project, args.state == "on", actor=ADMIN_ACTOR)
    print(f"{args.project}: upstream files {'merged' if args.state == 'on' else 'hidden'}")
    return 0


def _project_grant(args: argparse.Namespace) -> int:
    with _services(args) as services:
        private = services.private
        private.grant(args.project, args.user, actor=ADMIN_ACTOR)
    print(f"{args.user} may upload to {args.project}")
    return 0


def _project_yank(args: argparse.Namespace) -> int:
    with _services(args) as services:
        private = services.private
        files = private.set_yanked(
            args.project,
            args.target,
            yanked=args.yanked,
            reason=getattr(args, "reason", None),
            actor=ADMIN_ACTOR,
        )
    for filename in files:
        print(f"{'yanked' if args.yanked else 'unyanked'} {filename}")
    return 0


def _project_delete(args: argparse.Namespace) -> int:
    with _services(args) as services:
        private = services.private
        if args.filename:
            private.delete_file(args.project, args.filename, actor=ADMIN_ACTOR)
        else:
            private.delete_project(args.project, actor=ADMIN_ACTOR)
    print(f"deleted {args.filename or args.project}")
    return 0


# -- warm, export, import: the cache itself, for air-gapped sites --------------------------

_REQUIREMENTS = ("-r", "--requirement", "--requirements")


def _target_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--python-version", metavar="X.Y", help="resolve for this Python (wheels only)"
    )
    command.add_argument(
        "--platform",
        action="append",
        metavar="TAG",
        help="resolve for this platform tag, e.g. manylinux_2_17_x86_64 (repeatable; wheels only)",
    )
    command.add_argument(
        "--index-url",
        metavar="URL",
        help="a running pypicache on this database to drive (default: start one in-process)",
    )


def _cache(
    args: argparse.Namespace,
) -> tuple[Settings, db.Database, BlobStore]:
    """The configured database (migrated, as serve would) and blob store."""
    settings = _settings(args)
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade(settings.database_url)
    return settings, db.Database.from_url(settings.database_url), make_store(settings)


@contextmanager
def _index_url(args: argparse.Namespace, settings: Settings) -> Iterator[str]:
    """The index pip talks to: the one named, or this one served in-process meanwhile."""
    if args.index_url:
        yield args.index_url
        return
    from pypicache.ops.inprocess import (
        local_index,  # the web stack only for the commands that serve
    )

    with local_index(settings) as url:
        yield url


def _run_warm(
    args: argparse.Namespace, settings: Settings, database: db.Database
) -> tuple[WarmReport, Target]:
    requirements = Path(args.requirements)
    if not requirements.is_file():
        raise PypicacheError(f"{requirements}: no such requirements file")
    target = Target(args.python_version, tuple(args.platform or ()))
    with Progress("warm") as progress, _index_url(args, settings) as url:
        report = warm(requirements, url, target, database, progress, pip_timeout(settings))
    for f in report.fetched:
        print(f"fetched         {f.filename} ({format_bytes(f.size)})")
    for f in report.cached:
        print(f"already cached  {f.filename}")
    for failure in report.failures:
        print(f"failed          {failure.item}: {failure.reason}")
    print(
        f"warm: {len(report.files)} distributions for {target.describe()}: "
        f"{len(report.fetched)} fetched "
        f"({format_bytes(sum(f.size for f in report.fetched))}), "
        f"{len(report.cached)} already cached, {len(report.failures)} failed",
        flush=True,
    )
    return report, target


def _warm(args: argparse.Namespace) -> int:
    settings, database, _ = _cache(args)
    try:
        report, _ = _run_warm(args, settings, database)
    finally:
        database.dispose()
    return 1 if report.failures else 0


def _export(args: argparse.Namespace) -> int:
    if args.project and (args.python_version or args.platform or args.index_url):
        raise PypicacheError("--python-version, --platform and --index-url need --requirements")
    out = Path(args.out)
    settings, database, store = _cache(args)
    try:
        wanted: Mapping[str, set[str] | None]
        if args.requirements:
            report, _ = _run_warm(args, settings, database)
            if report.failures:
                raise PypicacheError("warming failed, so no bundle was written")
            chosen: dict[str, set[str]] = {}
            for f in report.files:
                chosen.setdefault(f.project, set()).add(f.filename)
            wanted = chosen
        else:
            wanted = {canonicalize_name(name): None for name in args.project}
        plan = plan_export(database, store, wanted, settings.upstream_url)
    finally:
        database.dispose()
    for line in plan.skipped:
        print(f"skipped {line}")
    with Progress("export", plan.total_bytes, count_bytes=True) as progress:
        write_bundle(plan, store, out, progress)
    print(
        f"export: {len(plan.manifest.projects)} projects, {plan.file_count} files, "
        f"{len(plan.sources)} blobs ({format_bytes(plan.total_bytes)}) written to {out}"
        + (f"; {len(plan.skipped)} skipped" if plan.skipped else "")
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    _, database, store = _cache(args)
    try:
        with Bundle(Path(args.bundle)) as bundle:
            with Progress("verify", bundle.total_bytes, count_bytes=True) as progress:
                bundle.verify(progress)
            total = bundle.missing_bytes(store)
            with Progress("import", total, count_bytes=True) as progress:
                report = import_bundle(bundle, database, store, progress, actor=ADMIN_ACTOR)
    finally:
        database.dispose()
    for line in report.superseded:
        print(f"kept ours {line}")
    for line in report.conflicts:
        print(f"conflict  {line}; left as it is")
    print(_import_summary(report))
    return 1 if report.conflicts else 0


def _import_summary(r: ImportReport) -> str:
    projects = r.projects_created + r.projects_updated + r.projects_unchanged
    files = r.files_added + r.files_updated + r.files_unchanged
    summary = (
        f"import: {projects} projects ({r.projects_created} created, {r.projects_updated} "
        f"updated, {r.projects_unchanged} unchanged), {files} files ({r.files_added} added, "
        f"{r.files_updated} updated, {r.files_unchanged} unchanged), {r.blobs_stored} blobs "
        f"stored ({format_bytes(r.bytes_stored)}), {r.blobs_present} already stored"
    )
    if not (r.projects_created or r.projects_updated or r.blobs_stored):
        summary += "; nothing changed"
    return summary


# -- retention and verification: straight to the database and the blob store -----------------


def _gc(args: argparse.Namespace) -> int:
    services = _tools(args)
    limit = services.settings.cache_max_bytes
    retention = Retention(services.database, services.store, limit)
    verb = "would evict" if args.dry_run else "evicted"

    def report(eviction: Eviction) -> None:
        print(
            f"{verb} {', '.join(eviction.files)} ({format_bytes(eviction.size)}, "
            f"last used {eviction.last_used:%Y-%m-%d %H:%M:%S} UTC)",
            flush=True,
        )

    try:
        before = retention.size()
        limit_text = format_bytes(limit) if limit else "none (pypicache.cache_max_bytes = 0)"
        print(
            f"cached upstream files: {format_bytes(before.bytes)} in {before.blobs} blobs; "
            f"limit {limit_text}",
            flush=True,
        )
        result = retention.collect(dry_run=args.dry_run, report=report)
    finally:
        services.close()
    for skipped in result.in_use:
        print(f"kept {', '.join(skipped.files)}: being served")
    state, done = ("would be", "to evict") if args.dry_run else ("now", "evicted")
    print(
        f"{state}: {format_bytes(result.after.bytes)} in {result.after.blobs} blobs "
        f"({len(result.evicted)} {done})"
    )
    return 0


class _VerifyProgress:
    """Hashing progress: a bar on a terminal, a line every few seconds in a log or a pipe."""

    LINE_INTERVAL = 5.0

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._progress: Progress | None = None
        self._blobs = self._hashed = self._unshown = 0
        self._shown_at = time.monotonic()

    def started(self, blobs: int, total_bytes: int) -> None:
        self._blobs = blobs
        self._progress = Progress("verify", total_bytes, count_bytes=True)

    def hashed(self, name: str, size: int) -> None:
        assert self._progress is not None
        self._hashed += 1
        self._unshown += size
        now = time.monotonic()
        if self._tty or self._hashed == self._blobs or now - self._shown_at >= self.LINE_INTERVAL:
            self._progress.update(f"{self._hashed}/{self._blobs} blobs", self._unshown)
            self._unshown, self._shown_at = 0, now

    def found(self, finding: Finding) -> None:
        self.close()  # end the status line before results go to stdout
        print(_finding_line(finding), flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


def _finding_line(finding: Finding) -> str:
    what = finding.name
    if finding.kind is not Kind.MISSING:
        what += f" ({format_bytes(finding.size)})"
    if finding.files:
        what += f" of {', '.join(finding.files)}"
    if finding.private and finding.kind in (Kind.CORRUPT, Kind.MISSING):
        # A private file has no upstream to refetch it from: nothing may hide that.
        what = f"ERROR: {finding.kind.value.upper()} PRIVATE FILE {what}: cannot be refetched"
    else:
        what = f"{finding.kind.value} {what}"
    return f"{what}: {finding.note}" if finding.note else what


def _verify(args: argparse.Namespace) -> int:
    services = _tools(args)
    settings = services.settings
    verifier = Verifier(services.database, services.store, settings.data_dir / "quarantine")
    progress = _VerifyProgress()
    try:
        result = verifier.run(repair=args.repair, reporter=progress)
    finally:
        progress.close()
        services.close()
    remaining = result.remaining
    print(
        f"verified {result.blobs} blobs ({format_bytes(result.bytes)}): "
        f"{len(result.findings)} problems, {len(result.findings) - len(remaining)} repaired, "
        f"{len(remaining)} remain"
    )
    if remaining and not args.repair:
        print("run `pypicache verify --repair` to fix what can be fixed")
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
