"""Named indexes: create, change and delete them, and push releases between them."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import see_other
from pypicache.errors import PypicacheError
from pypicache.web.security import ADMIN


def _names(value: str) -> list[str]:
    """Names as a form gives them: separated by commas or whitespace."""
    return [name for name in value.replace(",", " ").split() if name]


@view_config(
    route_name="admin_indexes",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/indexes.jinja2",
)
def indexes(request: Request) -> dict[str, Any]:
    return {
        "section": "indexes",
        "indexes": request.services.indexes.all(),
        "upstreams": [u.name for u in request.services.settings.upstreams],
    }


@view_config(route_name="admin_indexes", request_method="POST", permission=ADMIN)
def create_index(request: Request) -> Response:
    name = request.POST.get("name", "").strip()
    try:
        request.services.indexes.create(
            name,
            bases=_names(request.POST.get("bases", "")),
            description=request.POST.get("description", "").strip() or None,
            uploaders=_names(request.POST.get("uploaders", "")),
            read_auth=request.POST.get("read_auth") == "on",
            actor=request.identity.name,
        )
    except PypicacheError as exc:
        request.session.flash(f"Not created: {exc}", "error")
    else:
        request.session.flash(f"Index {name} created: /i/{name}/simple/.", "ok")
    return see_other(request, "admin_indexes")


@view_config(route_name="admin_index_update", request_method="POST", permission=ADMIN)
def update_index(request: Request) -> Response:
    name = request.matchdict["index"]
    bases = request.POST.get("bases")
    try:
        request.services.indexes.update(
            name,
            bases=_names(bases) if bases is not None else None,
            description=request.POST.get("description", "").strip() or None,
            uploaders=_names(request.POST.get("uploaders", "")),
            read_auth=request.POST.get("read_auth") == "on",
            actor=request.identity.name,
        )
    except PypicacheError as exc:
        request.session.flash(f"Not changed: {exc}", "error")
    else:
        request.session.flash(f"Index {name} changed.", "ok")
    return see_other(request, "admin_indexes")


@view_config(route_name="admin_index_delete", request_method="POST", permission=ADMIN)
def delete_index(request: Request) -> Response:
    name = request.matchdict["index"]
    try:
        deleted = request.services.indexes.delete(
            name, force=request.POST.get("force") == "on", actor=request.identity.name
        )
    except PypicacheError as exc:
        request.session.flash(f"Not deleted: {exc}", "error")
    else:
        more = f" with its {deleted} private projects" if deleted else ""
        request.session.flash(f"Index {name} deleted{more}.", "ok")
    return see_other(request, "admin_indexes")


@view_config(route_name="admin_index_push", request_method="POST", permission=ADMIN)
def push_release(request: Request) -> Response:
    source, dest = request.POST.get("source", ""), request.POST.get("dest", "")
    project, _, version = request.POST.get("release", "").strip().partition("==")
    if not project or not version:
        request.session.flash("Not pushed: name the release as PROJECT==VERSION.", "error")
        return see_other(request, "admin_indexes")
    try:
        pushed = request.services.private.push(
            source, dest, project, version, actor=request.identity.name
        )
    except PypicacheError as exc:
        request.session.flash(f"Not pushed: {exc}", "error")
    else:
        copied = ", ".join(pushed.copied) or "nothing new (every file was there)"
        request.session.flash(
            f"Pushed {project} {version} from {source} to {dest}: {copied}.", "ok"
        )
    return see_other(request, "admin_indexes")
