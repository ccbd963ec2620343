"""The dashboard: the upstream and the follower, the cache, traffic, alarms, invalidations."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from pyramid.request import Request
from pyramid.view import view_config

from pypicache.admin.charts import Series, line_chart, per_minute
from pypicache.follower.follower import status as follower_status
from pypicache.web.security import ADMIN

INDIGO, AMBER, TEAL = "#4f46e5", "#f59e0b", "#0d9488"


@view_config(
    route_name="admin",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/dashboard.jinja2",
)
def dashboard(request: Request) -> dict[str, Any]:
    services = request.services
    upstreams = [u.name for u in services.settings.upstreams]
    follower = follower_status(services.database, upstreams, services.followers)
    for upstream in services.settings.upstreams:
        follower["upstreams"][upstream.name]["url"] = upstream.url
    totals = request.services.metrics.cache_totals()
    lookups = sum(totals.values())
    alarms = request.services.reports.open_alarms(limit=5)
    return {
        "section": "dashboard",
        "upstream": request.services.settings.upstream_url,
        "follower": follower,
        "cache": request.services.reports.cache_counts(),
        "hits": totals.get("hit", 0.0) + totals.get("stale", 0.0),
        "misses": totals.get("miss", 0.0),
        "hit_ratio": (totals.get("hit", 0.0) + totals.get("stale", 0.0)) / lookups
        if lookups
        else None,
        "upstream_bytes": request.services.metrics.upstream_bytes_total(),
        "charts": _charts(request, following=follower["following"]),
        "alarms": alarms,
        "invalidations": request.services.reports.recent_invalidations(),
    }


def _charts(request: Request, *, following: bool) -> list[tuple[str, Markup]]:
    """Titles and SVG charts of the recent samples: this process's traffic, the lag."""
    samples = request.services.history.samples()
    times = [s.at for s in samples]
    charts = []
    if following:
        title = "Follower lag, serials"
        lag = [Series("behind the upstream", [s.lag_serials for s in samples], INDIGO)]
        charts.append((title, line_chart(title, times, lag)))
    title = "Cache lookups per minute"
    lookups = [
        Series("hits", per_minute(times, [s.hits for s in samples]), INDIGO),
        Series("misses", per_minute(times, [s.misses for s in samples]), AMBER),
    ]
    charts.append((title, line_chart(title, times, lookups)))
    title = "Upstream bytes per minute"
    received = [Series("received", per_minute(times, [s.upstream_bytes for s in samples]), TEAL)]
    charts.append((title, line_chart(title, times, received, format_value=_bytes)))
    return charts


def _bytes(value: float) -> str:
    """Axis labels: 0 B, 500 kB, 1.5 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1000
    return f"{value:.1f}".removesuffix(".0") + " TB"
