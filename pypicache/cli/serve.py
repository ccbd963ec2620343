"""``pypicache serve``: the index on waitress, the port bound before the app is built."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from pypicache.cli.common import LOG_FORMAT, load_settings
from pypicache.ops.allocator import share_heaps
from pypicache.ops.collector import freeze_startup
from pypicache.settings import Settings

# Bytes of a response waitress holds unsent before the thread writing it waits: one of the
# 256 KiB pieces a fill streams in.  At 1 MiB, eight uv clients installing cold at once
# held up to 1 MiB in each of their downloads, and the server peaked at 118-120 MB; at
# 256 KiB, 100-103 MB, and the installs took no longer (5.3-5.4 s against 5.5-5.8).
OUTBUF_HIGH_WATERMARK = 256 * 1024


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_command(args: argparse.Namespace) -> int:
    from waitress.server import create_server

    # The web stack only for the one command that serves.
    from pypicache.app import make_wsgi_app, tune_server

    if not args.config:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = load_settings(
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
    # Before the threads start: they share two heaps rather than keep one each.
    share_heaps()
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
            # A response thread waits while this much is unsent, instead of queueing up
            # to waitress's 16 MiB and moving on: a cold install streams dozens of fills
            # at once, and buffering each at full speed took the process from 110 MB to
            # 200 MB at its peak (no slower: the client drains the same bytes either way).
            outbuf_high_watermark=OUTBUF_HIGH_WATERMARK,
            # Uploads up to the limit, plus room for the form around the file.
            max_request_body_size=settings.max_upload_size + 1024 * 1024,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"pypicache: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 2
    tune_server(server)
    try:
        late.app = app = make_wsgi_app(settings)
    except BaseException:
        server.close()
        raise
    freeze_startup()
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
