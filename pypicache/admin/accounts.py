"""Users and API tokens: create users, set roles, reset passwords, create and revoke tokens."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import see_other
from pypicache.errors import AccountError
from pypicache.web.security import ADMIN


@view_config(
    route_name="admin_users",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/users.jinja2",
)
def users(request: Request) -> dict[str, Any]:
    return _page(request)


@view_config(route_name="admin_users", request_method="POST", permission=ADMIN)
def add_user(request: Request) -> Response:
    name = request.POST.get("name", "").strip()
    admin = request.POST.get("role") == "admin"
    try:
        request.services.accounts.add_user(
            name, request.POST.get("password", ""), admin=admin, actor=request.identity.name
        )
    except AccountError as exc:
        request.session.flash(f"Not created: {exc}", "error")
    else:
        request.session.flash(f"User {name} created ({'admin' if admin else 'uploader'}).", "ok")
    return see_other(request, "admin_users")


@view_config(route_name="admin_user_role", request_method="POST", permission=ADMIN)
def set_role(request: Request) -> Response:
    name = request.matchdict["user"]
    admin = request.POST.get("role") == "admin"
    if name == request.identity.name and not admin:
        # Nobody locks themselves out by accident; another admin can do it.
        request.session.flash("You cannot take away your own admin role.", "error")
        return see_other(request, "admin_users")
    try:
        request.services.accounts.set_admin(name, admin, actor=request.identity.name)
    except AccountError as exc:
        request.session.flash(f"Not changed: {exc}", "error")
    else:
        request.session.flash(f"{name} is now {'an admin' if admin else 'an uploader'}.", "ok")
    return see_other(request, "admin_users")


@view_config(route_name="admin_user_password", request_method="POST", permission=ADMIN)
def reset_password(request: Request) -> Response:
    name = request.matchdict["user"]
    try:
        request.services.accounts.set_password(
            name, request.POST.get("password", ""), actor=request.identity.name
        )
    except AccountError as exc:
        request.session.flash(f"Not changed: {exc}", "error")
    else:
        request.session.flash(f"{name} has a new password; old logins of {name} end.", "ok")
    return see_other(request, "admin_users")


@view_config(
    route_name="admin_tokens",
    request_method="POST",
    permission=ADMIN,
    renderer="admin/users.jinja2",
)
def create_token(request: Request) -> Response | dict[str, Any]:
    """Answered with the page itself, not a redirect: the token is shown once, here."""
    user = request.POST.get("user", "")
    description = request.POST.get("description", "").strip() or None
    try:
        token = request.services.accounts.create_token(
            user, description, actor=request.identity.name
        )
    except AccountError as exc:
        request.session.flash(f"No token created: {exc}", "error")
        return see_other(request, "admin_users")
    return _page(request, new_token=token, new_token_user=user)


@view_config(route_name="admin_token_revoke", request_method="POST", permission=ADMIN)
def revoke_token(request: Request) -> Response:
    token_id = request.matchdict["token_id"]
    try:
        request.services.accounts.revoke_token(
            int(token_id) if token_id.isdigit() else -1, actor=request.identity.name
        )
    except AccountError as exc:
        request.session.flash(f"Not revoked: {exc}", "error")
    else:
        request.session.flash(f"Token {token_id} is revoked; it no longer works.", "ok")
    return see_other(request, "admin_users")


def _page(request: Request, **extra: Any) -> dict[str, Any]:
    accounts = request.services.accounts
    return {
        "section": "users",
        "users": accounts.users(),
        "tokens": accounts.tokens(),
        "new_token": None,
        "new_token_user": None,
        **extra,
    }
