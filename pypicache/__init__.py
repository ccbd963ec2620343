"""pypicache: a caching private Python package index."""

from __future__ import annotations

import warnings
from typing import Any

# Pyramid 2 still imports pkg_resources; its deprecation notice is noise to our users.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from pyramid.config import Configurator  # noqa: E402

from pypicache import db  # noqa: E402
from pypicache.ops import logs  # noqa: E402
from pypicache.settings import Settings  # noqa: E402
from pypicache.web.wsgi import PypicacheApp  # noqa: E402


def main(global_config: dict[str, Any] | None = None, **ini_settings: str) -> PypicacheApp:
    """The PasteDeploy entry point (``pserve development.ini``)."""
    return make_app(Settings.from_mapping(ini_settings))


def make_app(settings: Settings) -> PypicacheApp:
    """The composition root: read top to bottom, it is the table of contents."""
    if settings.log_format == "json":
        logs.use_json_logs()
    settings.prepare_data_dir()
    if settings.migrate_on_start:
        db.upgrade(settings.database_url)
    with Configurator() as config:
        config.registry["pypicache.settings"] = settings
        config.registry["database"] = db.Database.from_url(settings.database_url)
        # Blob store, upstream client, the index service as request.index, the follower,
        # the evictor.
        config.include(".services")
        # Basic auth (passwords, API tokens), the admin page's session and CSRF checks, and
        # the read/upload/admin permissions.
        config.include(".web.security")
        config.include(".web.routes")
        # The admin web page's templates (Jinja2) and what they format with.
        config.include(".admin")
        # Views, and the exception views that turn domain errors into HTTP.
        config.scan(".web.views")
        config.scan(".admin")
        wsgi_app = config.make_wsgi_app()
        registry = config.registry
    follower = registry["follower"]
    if follower is not None:
        # The changelog follower: one thread, led by one process of the deployment.
        follower.start()
    evictor = registry["evictor"]
    if evictor is not None:
        # Retention: evicts the least recently used cached files over pypicache.cache_max_bytes.
        evictor.start()
    history = registry["history"]
    # Samples for the dashboard's charts, a thread of its own.
    history.start()
    return PypicacheApp(
        wsgi_app,
        registry["index_service"],
        follower,
        registry["security_policy"],
        registry["database"],
        settings.client_max_age,
        registry["metrics"],
        evictor=evictor,
        history=history,
    )
