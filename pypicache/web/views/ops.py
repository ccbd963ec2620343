"""Endpoints for whoever operates the index: health, status and metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pypicache.follower.follower import status as follower_status
from pypicache.web.security import READ


@view_config(route_name="health", request_method=("GET", "HEAD"))
def health(request: Request) -> Response:
    """200 while the app can serve: it answers and its database does."""
    try:
        with request.services.database.unit_of_work() as db:
            db.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return Response(
            status=503, body=f"database unavailable: {exc}\n".encode(), content_type="text/plain"
        )
    return Response(body=b"ok\n", content_type="text/plain", cache_control="no-store")


@view_config(route_name="status", request_method=("GET", "HEAD"), renderer="json", permission=READ)
def status(request: Request) -> dict[str, object]:
    """Upstream serial, watermark, lag, follower health and cache counts, as JSON."""
    services = request.services
    upstreams = [u.name for u in services.settings.upstreams]
    report = follower_status(services.database, upstreams, services.followers)
    for upstream in services.settings.upstreams:
        report["upstreams"][upstream.name]["url"] = upstream.url
    report["upstream"] = request.services.settings.upstream_url
    request.response.cache_control = "no-store"
    return report


@view_config(route_name="metrics", request_method=("GET", "HEAD"))
def metrics(request: Request) -> Response:
    """Prometheus text format; open like /health, it names no project."""
    body = generate_latest(request.services.metrics.registry)
    response = Response(body=body, cache_control="no-store")
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
