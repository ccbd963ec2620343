"""Every URL the index answers."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("health", "/health")
    config.add_route("status", "/api/status")
    config.add_route("simple_index", "/simple/")
    config.add_route("simple_project", "/simple/{project}/")
    # The filename is the last path segment, as pip and uv expect (they take it from the URL).
    config.add_route("file", "/packages/{project}/{filename}")
