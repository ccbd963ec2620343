"""``pypicache warm``, ``export`` and ``import``: the cache itself, for air-gapped sites."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from packaging.utils import canonicalize_name

from pypicache import db
from pypicache.cli.common import ADMIN_ACTOR, load_settings
from pypicache.errors import PypicacheError
from pypicache.ops.bundle_export import plan_export, write_bundle
from pypicache.ops.bundle_import import Bundle, ImportReport, import_bundle
from pypicache.ops.progress import Progress, format_bytes
from pypicache.ops.warm import Target, WarmReport, pip_timeout, warm
from pypicache.settings import Settings
from pypicache.storage.local import BlobStore, make_store

REQUIREMENTS = ("-r", "--requirement", "--requirements")


def target_options(command: argparse.ArgumentParser) -> None:
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
    settings = load_settings(args)
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


def warm_cache(args: argparse.Namespace) -> int:
    settings, database, _ = _cache(args)
    try:
        report, _ = _run_warm(args, settings, database)
    finally:
        database.dispose()
    return 1 if report.failures else 0


def export_cache(args: argparse.Namespace) -> int:
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


def import_cache(args: argparse.Namespace) -> int:
    settings, database, store = _cache(args)
    try:
        with Bundle(Path(args.bundle)) as bundle:
            with Progress("verify", bundle.total_bytes, count_bytes=True) as progress:
                bundle.verify(progress)
            total = bundle.missing_bytes(store)
            with Progress("import", total, count_bytes=True) as progress:
                report = import_bundle(
                    bundle,
                    database,
                    store,
                    progress,
                    actor=ADMIN_ACTOR,
                    upstream=settings.upstreams[0].name,
                )
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
