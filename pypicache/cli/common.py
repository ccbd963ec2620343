"""What the commands share: their config options, their settings and their services."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from pypicache import db
from pypicache.services import Services, build_services
from pypicache.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s"
ADMIN_ACTOR = "cli"


def config_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", metavar="INI", help="read [app:main] settings from this file")
    command.add_argument("--data-dir", metavar="DIR", help="where the database and files live")


def load_settings(args: argparse.Namespace, **overrides: str | None) -> Settings:
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


def tools(args: argparse.Namespace) -> Services:
    """The services on the configured database and store, none of their threads started.

    Without an upstream: these commands change what is stored and never ask the upstream.
    """
    settings = load_settings(args)
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade(settings.database_url)
    upstreams = tuple(dataclasses.replace(u, url=None) for u in settings.upstreams)
    return build_services(dataclasses.replace(settings, upstream_url=None, upstreams=upstreams))


@contextmanager
def command_services(args: argparse.Namespace) -> Iterator[Services]:
    """``tools`` for one command: closed afterwards."""
    services = tools(args)
    try:
        yield services
    finally:
        services.close()
