"""The HTTP face: the WSGI app, routes, security policy and views."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request

from pypicache.services import Services

# Where the includes find the services while the app is configured (views use
# ``request.services``).
SERVICES_KEY = "pypicache.services"


def configured_services(config: Configurator) -> Services:
    services: Services = config.registry[SERVICES_KEY]
    return services


def includeme(config: Configurator) -> None:
    # ``request.services`` on a request class of this app's own, made once: a reified
    # request method gave every request a class of its own (20 µs to make, and the rest
    # of the request looked up its attributes without the type's cache).
    services = configured_services(config)
    config.set_request_factory(type("Request", (Request,), {"services": services}))
