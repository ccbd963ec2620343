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
    services = configured_services(config)

    def request_services(request: Request) -> Services:
        return services

    config.add_request_method(request_services, "services", reify=True)
