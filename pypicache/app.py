"""The composition root: the one place the app is put together, for server, CLI and tests."""

from __future__ import annotations

import warnings
from typing import Any

# Pyramid 2 still imports pkg_resources; its deprecation notice is noise to our users.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pyramid.config import Configurator  # noqa: E402
from pyramid.interfaces import ISecurityPolicy  # noqa: E402

from pypicache import db  # noqa: E402
from pypicache.ops import logs  # noqa: E402
from pypicache.services import build_services  # noqa: E402
from pypicache.settings import Settings  # noqa: E402
from pypicache.web import SERVICES_KEY  # noqa: E402
from pypicache.web.sendfile import send_files_by_sendfile  # noqa: E402
from pypicache.web.wsgi import PypicacheApp  # noqa: E402


def main(global_config: dict[str, Any] | None = None, **ini_settings: str) -> PypicacheApp:
    """The PasteDeploy entry point (``pserve development.ini``)."""
    return make_wsgi_app(Settings.from_mapping(ini_settings))


def make_wsgi_app(settings: Settings) -> PypicacheApp:
    """The composition root: read top to bottom, it is the table of contents."""
    if settings.log_format == "json":
        logs.use_json_logs()
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade_apart(settings.database_url)
    services = build_services(settings)
    with Configurator() as config:
        config.registry[SERVICES_KEY] = services
        # request.services: the domain objects, the same ones the threads and commands use.
        config.include(".web")
        # Basic auth (passwords, API tokens), the admin page's session and CSRF checks, and
        # the read/upload/admin permissions.
        config.include(".web.security")
        # The index's URLs; the admin page's are the admin's own.
        config.include(".web.routes")
        # The admin web page: its routes, templates (Jinja2) and what they format with.
        config.include(".admin")
        # Views, and the exception views that turn domain errors into HTTP.
        config.scan(".web.views")
        config.scan(".admin")
        wsgi_app = config.make_wsgi_app()
        policy = config.registry.queryUtility(ISecurityPolicy)
    services.start()
    return PypicacheApp(wsgi_app, services, policy)


def tune_server(server: Any) -> None:
    """What every waitress server of the app gets, ``pypicache serve``'s and the tests'
    alike: stored files sent by the kernel (web.sendfile)."""
    send_files_by_sendfile(server)
