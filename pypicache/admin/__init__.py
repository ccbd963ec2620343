"""The admin web page: server-rendered HTML under /admin/, for admins logged in by session.

Every page is a Jinja2 template under ``pypicache/admin/templates/admin/``; every change
is a POST with the session's CSRF token, answered with a redirect (or, for a new
token, the page that shows it once).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.events import BeforeRender, NewResponse, subscriber
from pyramid.exceptions import BadCSRFToken
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config, forbidden_view_config

from pypicache.errors import ProjectNotFound
from pypicache.models import utcnow
from pypicache.times import format_duration
from pypicache.web.views.simple import SIMPLE_SECURITY_POLICY

ADMIN_PATHS = r"^/admin/"
TEMPLATES = "admin/"
# Our own stylesheet and inline SVG (which needs no source), forms to ourselves, nothing
# else: no script, no inline style, no framing.  Sent on every response under /admin/,
# error pages, redirects and the stylesheet included.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def includeme(config: Configurator) -> None:
    # The admin web page (login required); every change is a POST to a URL of its own.
    config.add_route("admin", "/admin/")
    config.add_route("admin_login", "/admin/login")
    config.add_route("admin_logout", "/admin/logout")
    config.add_route("admin_projects", "/admin/projects/")
    config.add_route("admin_project", "/admin/projects/{project}/")
    config.add_route("admin_project_refresh", "/admin/projects/{project}/refresh")
    config.add_route("admin_project_purge", "/admin/projects/{project}/purge")
    config.add_route("admin_project_merge", "/admin/projects/{project}/merge")
    config.add_route("admin_project_status", "/admin/projects/{project}/status")
    config.add_route("admin_file_yank", "/admin/projects/{project}/yank")
    config.add_route("admin_file_delete", "/admin/projects/{project}/delete")
    config.add_route("admin_upload", "/admin/upload")
    config.add_route("admin_indexes", "/admin/indexes/")
    config.add_route("admin_index_update", "/admin/indexes/{index}/update")
    config.add_route("admin_index_delete", "/admin/indexes/{index}/delete")
    config.add_route("admin_index_push", "/admin/indexes/push")
    config.add_route("admin_policy", "/admin/policy/")
    config.add_route("admin_policy_block", "/admin/policy/block")
    config.add_route("admin_policy_allow_release", "/admin/policy/allow-release")
    config.add_route("admin_policy_allow_only", "/admin/policy/allow-only")
    config.add_route("admin_policy_revoke", "/admin/policy/{rule_id}/revoke")
    config.add_route("admin_users", "/admin/users/")
    config.add_route("admin_user_role", "/admin/users/{user}/role")
    config.add_route("admin_user_password", "/admin/users/{user}/password")
    config.add_route("admin_tokens", "/admin/tokens/")
    config.add_route("admin_token_revoke", "/admin/tokens/{token_id}/revoke")
    config.add_route("admin_alarms", "/admin/alarms/")
    config.add_route("admin_alarms_ack", "/admin/alarms/acknowledge")
    config.add_route("admin_shadowed", "/admin/shadowed/")
    config.add_route("admin_audit", "/admin/audit/")
    config.add_static_view("admin/static", "pypicache.admin:static", cache_max_age=3600)
    config.add_settings(
        {
            "jinja2.directories": "pypicache.admin:templates",
            "jinja2.undefined": "strict",  # a misspelt name fails the tests, not the page
            # Every template, whatever its extension: upstream text is never markup.
            "jinja2.autoescape": "true",
            "jinja2.trim_blocks": "true",
            "jinja2.lstrip_blocks": "true",
        }
    )
    config.include("pyramid_jinja2")

    def add_filters() -> None:
        env = config.get_jinja2_environment()
        env.filters.update(ago=ago, utc=utc, duration=duration, number=number, span=span)
        env.globals.update(page_link=page_link)

    config.action(None, add_filters, order=999)  # once the environment exists


@subscriber(BeforeRender)
def page_globals(event: BeforeRender) -> None:
    """What every admin page shows around its content: who is in, the alarm banner, flashes."""
    request: Request | None = event.get("request")
    if request is None or not str(event.get("renderer_name", "")).startswith(TEMPLATES):
        return
    request.response.cache_control = "no-store"  # a page may show a new token
    me = request.identity
    event["me"] = me
    event.setdefault("section", "")  # which sidebar entry is highlighted
    event["open_alarm_count"] = (
        request.services.reports.open_alarm_count() if me is not None and me.is_admin else 0
    )
    event["flashes"] = [
        (kind, message) for kind in ("ok", "error") for message in request.session.pop_flash(kind)
    ]


@subscriber(NewResponse)
def security_headers(event: NewResponse) -> None:
    """A policy and nosniff on every answer Pyramid gives, admin pages and error pages alike.

    The fresh-page fast path in wsgi.py bypasses Pyramid; ``page_response`` sets them there.
    """
    headers = event.response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if event.request.path_info.startswith("/admin/"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    else:
        # Every other answer of the index loads nothing and runs nothing in a browser.
        headers.setdefault("Content-Security-Policy", SIMPLE_SECURITY_POLICY)


def see_other(request: Request, route: str, **kw: Any) -> HTTPSeeOther:
    """Post/redirect/get: every change answers with the page to look at next."""
    return HTTPSeeOther(location=request.route_path(route, **kw))


def back_to(request: Request, fallback: str) -> HTTPSeeOther:
    """Back to the admin page named by the form's ``next``, if it is one of ours."""
    target = request.POST.get("next", "")
    return HTTPSeeOther(location=target if is_admin_path(target) else fallback)


def is_admin_path(target: str) -> bool:
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc and parts.path.startswith("/admin/")


def page_link(request: Request, number: int) -> str:
    """This page's URL with the same query, at page ``number``."""
    return str(request.current_route_path(_query={**request.GET, "page": number}))


def page_number(request: Request) -> int:
    value = request.params.get("page", "1")
    return int(value) if value.isdigit() else 1


# -- errors, as pages --------------------------------------------------------------------------


@forbidden_view_config(path_info=ADMIN_PATHS, renderer="admin/error.jinja2")
def forbidden(exc: Exception, request: Request) -> Response | dict[str, Any]:
    """Nobody logged in: the login page.  Logged in, but not an admin: 403, no data."""
    if request.identity is None:
        next_path = request.path_qs if request.method == "GET" else request.route_path("admin")
        return HTTPSeeOther(location=request.route_path("admin_login", _query={"next": next_path}))
    request.response.status = 403
    return {
        "title": "Admins only",
        "message": f"You are logged in as {request.identity.name}, who is not an admin. "
        "Log out and log in as an admin to use these pages.",
    }


@exception_view_config(BadCSRFToken, path_info=ADMIN_PATHS, renderer="admin/error.jinja2")
def bad_csrf_token(exc: BadCSRFToken, request: Request) -> dict[str, Any]:
    request.response.status = 400
    return {
        "title": "Form refused",
        "message": "The form did not carry this session's security token (it came from "
        "another site, or from a page older than your login). Nothing was changed: "
        "go back, reload the page and try again.",
    }


@exception_view_config(ProjectNotFound, path_info=ADMIN_PATHS, renderer="admin/error.jinja2")
def not_found(exc: ProjectNotFound, request: Request) -> dict[str, Any]:
    request.response.status = 404
    return {"title": "Not found", "message": f"There is no project named {exc} here."}


# -- what templates format with ----------------------------------------------------------------


def ago(value: datetime | str | None) -> str:
    """'3 min ago' for a naive UTC time, or an ISO time as /api/status gives it."""
    if value is None:
        return "never"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.removesuffix("Z"))
    seconds = (utcnow() - value).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -60 else f"in {duration(-seconds)}"
    return "just now" if seconds < 5 else f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def span(value: timedelta | None) -> str:
    """A cooldown as its setting spells it (``7d``, ``1d12h``), or that it is off."""
    if value is None:
        return "—"
    return format_duration(value) if value else "0 (off)"


def utc(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "—"


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"
