"""Logging in to the admin page with a user's password, and out again."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import forget, remember
from pyramid.view import view_config

from pypicache.admin import is_admin_path, see_other
from pypicache.errors import RateLimited

WRONG = "Wrong user name or password."


@view_config(route_name="admin_login", request_method="GET", renderer="admin/login.jinja2")
def login_form(request: Request) -> Response | dict[str, Any]:
    if request.identity is not None and request.identity.is_admin:
        return see_other(request, "admin")
    return {"next": _next(request), "username": "", "error": ""}


@view_config(route_name="admin_login", request_method="POST", renderer="admin/login.jinja2")
def login(request: Request) -> Response | dict[str, Any]:
    username = request.POST.get("username", "").strip()
    try:
        accepted = request.services.accounts.login(
            username, request.POST.get("password", ""), address=request.remote_addr
        )
    except RateLimited as exc:
        request.response.status = 429
        request.response.headers["Retry-After"] = str(exc.retry_after)
        error = f"Too many failed logins: try again in {exc.retry_after} s."
        return {"next": _next(request), "username": username, "error": error}
    if accepted is None:
        request.response.status = 400
        return {"next": _next(request), "username": username, "error": WRONG}
    headers = remember(request, accepted.ticket)
    return HTTPSeeOther(location=_next(request), headers=headers)


@view_config(route_name="admin_logout", request_method="POST")
def logout(request: Request) -> Response:
    headers = forget(request)
    request.session.flash("You are logged out.", "ok")
    return HTTPSeeOther(location=request.route_path("admin_login"), headers=headers)


def _next(request: Request) -> str:
    target = request.params.get("next", "")
    return target if is_admin_path(target) else request.route_path("admin")
