"""The ``pypicache`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pyramid.paster import get_appsettings, setup_logging

from .errors import SettingsError
from .settings import Settings

DEFAULT_PORT = 6543
LOG_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pypicache", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the index (built-in defaults without --config)")
    serve.add_argument("--config", metavar="INI", help="read [app:main] settings from this file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    serve.add_argument(
        "--threads", type=int, default=16, help="request threads (each download holds one)"
    )
    serve.add_argument("--upstream", metavar="URL", help="upstream simple index URL, or 'none'")
    serve.add_argument("--changelog", metavar="URL", help="upstream changelog URL, or 'none'")
    serve.add_argument("--data-dir", metavar="DIR", help="where the database and files live")
    serve.add_argument("--follow-interval", metavar="SECONDS", help="changelog poll interval")
    serve.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SettingsError as exc:
        print(f"pypicache: bad setting {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    import waitress

    from . import make_app

    if args.config:
        setup_logging(args.config)
        ini = get_appsettings(args.config, name="main")
    else:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        ini = {}
    settings = Settings.from_mapping(
        ini,
        overrides={
            "pypicache.upstream_url": args.upstream,
            "pypicache.changelog_url": args.changelog,
            "pypicache.data_dir": args.data_dir,
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
    try:
        waitress.serve(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads,
            ident="pypicache",
            channel_timeout=300,
        )
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
