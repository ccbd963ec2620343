"""``/pypi/<project>/json``: the legacy JSON API of a project, as mirrors (bandersnatch) read it.

The page the index main serves for the name, in PyPI's shape: ``info``, ``releases``
(every version's files), ``urls`` (the newest version's) and ``last_serial``, this
index's serial of the name, also sent as ``X-PyPI-Last-Serial``.  File URLs are
absolute and point at this index.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from packaging.version import InvalidVersion, Version
from pyramid.httpexceptions import HTTPMovedPermanently
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.filefacts import FileFacts
from pypicache.names import normalize_project
from pypicache.web.security import READ

EPOCH = "1970-01-01T00:00:00.000000Z"


@view_config(
    route_name="legacy_json", request_method=("GET", "HEAD"), permission=READ, renderer="json"
)
def project_json(request: Request) -> dict[str, Any] | Response:
    name = normalize_project(request.matchdict["project"])
    if name != request.matchdict["project"]:
        return HTTPMovedPermanently(location=request.route_path("legacy_json", project=name))
    entry = request.services.index.project_page(name)
    page = entry.page
    releases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for facts in sorted(page.files.values(), key=lambda f: f.filename):
        releases[facts.version or ""].append(_file(request, name, facts))
    for version in page.data.versions:
        releases.setdefault(version, [])
    latest = _latest(releases)
    if page.serial is not None:
        request.response.headers["X-PyPI-Last-Serial"] = str(page.serial)
    request.response.cache_control = "no-cache" if page.private or entry.stale else "max-age=60"
    return {
        "info": {
            "name": page.data.display_name,
            "version": latest,
            "project_url": request.route_url("simple_project", project=name),
        },
        "last_serial": page.serial or 0,
        "releases": dict(sorted(releases.items())),
        "urls": releases.get(latest, []) if latest is not None else [],
    }


def _file(request: Request, project: str, facts: FileFacts) -> dict[str, Any]:
    upload_time = (
        facts.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if facts.upload_time else EPOCH
    )
    return {
        "filename": facts.filename,
        "url": request.route_url("file", project=project, filename=facts.filename),
        "digests": {"sha256": facts.sha256} if facts.sha256 else {},
        "size": facts.size,
        "requires_python": facts.requires_python,
        "upload_time_iso_8601": upload_time,
        "yanked": facts.yanked,
        "yanked_reason": facts.yanked_reason,
        "packagetype": "bdist_wheel" if facts.filename.endswith(".whl") else "sdist",
    }


def _latest(releases: dict[str, list[dict[str, Any]]]) -> str | None:
    """The newest version with a file that is not yanked (else the newest at all)."""

    def key(version: str) -> tuple[bool, Version]:
        try:
            parsed = Version(version)
        except InvalidVersion:
            parsed = Version("0")
        available = any(not f["yanked"] for f in releases[version])
        return available, parsed

    versions = [v for v in releases if v]
    return max(versions, key=key) if versions else None
