"""Projects: search, one project's files, and what an admin may do to them; browser uploads."""

from __future__ import annotations

import cgi
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.admin import back_to, page_number, see_other
from pypicache.errors import ProjectNotFound, PypicacheError, UploadRejected, UpstreamUnavailable
from pypicache.ops.reports import KINDS
from pypicache.policy.rules import ACTIVE, STATUSES
from pypicache.private.distfiles import validate_file
from pypicache.web.security import ADMIN
from pypicache.web.views.upload import close_file_parts


@view_config(
    route_name="admin_projects",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/projects.jinja2",
)
def search(request: Request) -> dict[str, Any]:
    query = request.params.get("q", "")
    kind = request.params.get("kind", "all")
    kind = kind if kind in KINDS else "all"
    return {
        "section": "projects",
        "query": query,
        "kind": kind,
        "kinds": KINDS,
        "results": request.services.reports.search_projects(
            query, kind=kind, page=page_number(request)
        ),
    }


@view_config(
    route_name="admin_project",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/project.jinja2",
)
def project(request: Request) -> dict[str, Any]:
    detail = request.services.reports.project(request.matchdict["project"])
    rules = request.services.guard.rules
    return {
        "section": "projects",
        "project": detail,
        "statuses": [r for r in rules.list() if r.kind in STATUSES and r.subject == detail.name],
        "status_choices": (ACTIVE, *STATUSES),
        "indexes": [i.name for i in request.services.indexes.all()],
        "follows_upstream": request.services.index.follows_upstream
        and (not detail.private or detail.merge_upstream),
    }


@view_config(route_name="admin_project_refresh", request_method="POST", permission=ADMIN)
def refresh(request: Request) -> Response:
    name = request.matchdict["project"]
    flash = request.session.flash
    try:
        result = request.services.index.refresh_now(name, actor=_me(request))
    except ProjectNotFound:
        flash(f"The upstream no longer has {name}: it is gone from the cache too.", "error")
        return see_other(request, "admin_projects")
    except UpstreamUnavailable as exc:
        flash(f"The upstream failed: {exc}", "error")
        return see_other(request, "admin_project", project=name)
    if result == "stale":
        flash(f"The upstream failed; {name} keeps the page it had.", "error")
    elif result == "hit":
        flash(f"{name} does not follow the upstream: nothing to refresh.", "ok")
    else:
        flash(f"{name} was fetched from the upstream just now.", "ok")
    return see_other(request, "admin_project", project=name)


@view_config(route_name="admin_project_purge", request_method="POST", permission=ADMIN)
def purge(request: Request) -> Response:
    name = request.matchdict["project"]
    count = request.services.index.purge(name, actor=_me(request))
    request.session.flash(f"Purged {count} cached file{'s' if count != 1 else ''} of {name}.", "ok")
    return see_other(request, "admin_project", project=name)


@view_config(route_name="admin_project_merge", request_method="POST", permission=ADMIN)
def merge(request: Request) -> Response:
    name = request.matchdict["project"]
    on = request.POST.get("merge") == "on"
    if _change(
        request, lambda: request.services.private.set_merge_upstream(name, on, actor=_me(request))
    ):
        request.session.flash(
            f"{name}: upstream files are {'merged into' if on else 'kept out of'} its page.", "ok"
        )
    return back_to(request, request.route_path("admin_project", project=name))


@view_config(route_name="admin_project_status", request_method="POST", permission=ADMIN)
def set_status(request: Request) -> Response:
    """PEP 792's status, for every index or one, as ``pypicache project status`` sets it."""
    name = request.matchdict["project"]
    status = request.POST.get("status", "")
    index = request.POST.get("index", "").strip() or None
    where = f"index {index}" if index else "every index"

    def change() -> None:
        if index is not None:
            request.services.indexes.info(index)  # IndexProblem when there is none
        request.services.guard.rules.set_status(
            name, status, actor=_me(request), reason=request.POST.get("reason", ""), index=index
        )

    if _change(request, change):
        request.session.flash(f"{name} is {status} on {where}.", "ok")
    return see_other(request, "admin_project", project=name)


@view_config(route_name="admin_file_yank", request_method="POST", permission=ADMIN)
def yank(request: Request) -> Response:
    name = request.matchdict["project"]
    filename = request.POST.get("filename", "")
    yanked = request.POST.get("yanked") == "on"
    reason = request.POST.get("reason", "").strip() or None
    if _change(
        request,
        lambda: request.services.private.set_yanked(
            name, filename, yanked=yanked, reason=reason, actor=_me(request)
        ),
    ):
        request.session.flash(f"{filename} is {'yanked' if yanked else 'no longer yanked'}.", "ok")
    return see_other(request, "admin_project", project=name)


@view_config(route_name="admin_file_delete", request_method="POST", permission=ADMIN)
def delete(request: Request) -> Response:
    name = request.matchdict["project"]
    filename = request.POST.get("filename", "")
    if _change(
        request, lambda: request.services.private.delete_file(name, filename, actor=_me(request))
    ):
        request.session.flash(f"{filename} is deleted; its name can never be used again.", "ok")
    return see_other(request, "admin_project", project=name)


@view_config(
    route_name="admin_upload",
    request_method="GET",
    permission=ADMIN,
    renderer="admin/upload.jinja2",
)
def upload_form(request: Request) -> dict[str, Any]:
    return {"section": "upload", "max_size": request.services.settings.max_upload_size}


@view_config(route_name="admin_upload", request_method="POST", permission=ADMIN)
def upload(request: Request) -> Response:
    """The same validation and storage as a twine upload, for a file chosen in the browser."""
    try:
        content = request.POST.get("content")
        if not isinstance(content, cgi.FieldStorage) or content.file is None:
            request.session.flash("Choose a wheel or an sdist to upload.", "error")
            return see_other(request, "admin_upload")
        try:
            valid = validate_file(
                content.filename or "",
                content.file,
                max_size=request.services.settings.max_upload_size,
            )
            result = request.services.private.upload(valid, content.file, request.identity)
        except UploadRejected as exc:
            request.services.metrics.uploads.labels("rejected").inc()
            request.session.flash(f"Upload refused: {exc.message}", "error")
            return see_other(request, "admin_upload")
    finally:
        close_file_parts(request)
    request.services.metrics.uploads.labels("duplicate" if result.duplicate else "stored").inc()
    request.session.flash(
        f"{result.filename} was already there, with the same bytes."
        if result.duplicate
        else f"Uploaded {result.filename}.",
        "ok",
    )
    return see_other(request, "admin_project", project=valid.project)


def _change(request: Request, change: Callable[[], object]) -> bool:
    """Run a change; a refusal (not private, no such file) becomes an error message."""
    try:
        change()
    except PypicacheError as exc:
        request.session.flash(f"Not done: {exc}", "error")
        return False
    return True


def _me(request: Request) -> str:
    return request.identity.name
