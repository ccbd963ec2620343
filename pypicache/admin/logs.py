"""What happened and what needs a look: alarms, the audit log, and the shadowed names."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import back_to, page_number
from pypicache.web.security import ADMIN


@view_config(
    route_name="admin_alarms",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/alarms.jinja2",
)
def alarms(request: Request) -> dict[str, Any]:
    return {
        "section": "alarms",
        "alarms": request.services.reports.open_alarms(),
        "acknowledged": request.services.reports.acknowledged_alarms(page_number(request)),
    }


@view_config(route_name="admin_alarms_ack", request_method="POST", permission=ADMIN)
def acknowledge(request: Request) -> Response:
    """Acknowledges the alarms the admin saw (the form lists them), not ones raised since."""
    ids = [int(v) for v in request.POST.getall("alarm") if v.isdigit()]
    count = request.services.reports.acknowledge(ids, actor=request.identity.name)
    request.session.flash(f"{count} alarm{'s' if count != 1 else ''} acknowledged.", "ok")
    return back_to(request, request.route_path("admin_alarms"))


@view_config(
    route_name="admin_shadowed",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/shadowed.jinja2",
)
def shadowed(request: Request) -> dict[str, Any]:
    return {
        "section": "shadowed",
        "names": request.services.reports.shadowed(),
        "has_upstream": request.services.index.follows_upstream,
    }


@view_config(
    route_name="admin_audit",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/audit.jinja2",
)
def audit(request: Request) -> dict[str, Any]:
    action = request.params.get("action", "")
    project = request.params.get("project", "").strip()
    return {
        "section": "audit",
        "action": action,
        "project": project,
        "actions": request.services.reports.audit_actions(),
        "entries": request.services.reports.audit(
            page=page_number(request), action=action or None, project=project or None
        ),
    }
