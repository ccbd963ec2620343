"""``gc``, ``verify``: retention and verification, straight to the database and the blob store."""

from __future__ import annotations

import argparse
import sys
import time

from pypicache.cache.quarantine import Quarantine
from pypicache.cache.retention import Eviction, Retention
from pypicache.cli.common import tools
from pypicache.ops.progress import Progress, format_bytes
from pypicache.ops.verify import Finding, Kind, Verifier


def gc_command(args: argparse.Namespace) -> int:
    services = tools(args)
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


def verify_command(args: argparse.Namespace) -> int:
    services = tools(args)
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
    quarantine = Quarantine(services.store, settings.quarantine_dir)
    kept = list(quarantine.blobs())
    damaged = quarantine.damaged()
    print(
        f"quarantine: {len(kept)} blobs of files removed upstream in {quarantine.root} "
        f"(`pypicache quarantined` lists them)"
        + (f"; DAMAGED (bytes no longer match their name): {', '.join(damaged)}" if damaged else "")
    )
    return 1 if remaining or damaged else 0


def quarantined_command(args: argparse.Namespace) -> int:
    """The files removed upstream whose bytes were kept aside, oldest first."""
    services = tools(args)
    try:
        quarantine = Quarantine(services.store, services.settings.quarantine_dir)
        records = list(quarantine.files())
    finally:
        services.close()
    if not records:
        print(f"nothing is quarantined ({quarantine.root})")
    for record in records:
        where = str(quarantine.root / record.sha256) if record.kept else "never cached"
        print(
            f"{record.at}  {record.source}/{record.project}/{record.filename}  "
            f"sha256={record.sha256}  {record.why}  [{where}]"
        )
    return 0
