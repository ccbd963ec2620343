"""Logging in to the admin page with a user's password, and out again."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import forget, remember
from pyramid.view import view_config

from . import is_admin_path, see_other


@view_config(route_name="admin_login", request_method="GET", renderer="admin/login.jinja2")
def login_form(request: Request) -> Response | dict[str, Any]:
    if request.identity is not None and request.identity.is_admin:
        return see_other(request, "admin")
    return {"next": _next(request), "username": "", "error": False}


@view_config(route_name="admin_login", request_method="POST", renderer="admin/login.jinja2")
def login(request: Request) -> Response | dict[str, Any]:
    username = request.POST.get("username", "").strip()
    accepted = request.accounts.login(username, request.POST.get("password", ""))
    if accepted is None:
        request.response.status = 400
        return {"next": _next(request), "username": username, "error": True}
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
