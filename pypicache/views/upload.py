"""The legacy upload API (POST /legacy/), as twine and ``uv publish`` speak it."""

from __future__ import annotations

import cgi

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from ..distfiles import UploadRejected, validate_upload
from ..security import UPLOAD

# Everything but these is a metadata field; the signature and attestations are
# accepted and ignored (twine warns that only PyPI keeps them).
FILE_PARTS = ("content", "gpg_signature", "attestations")
GONE = {
    "submit": "Project pre-registration is no longer required or supported; upload your files.",
    "submit_pkg_info": "Project pre-registration is no longer required or supported; "
    "upload your files.",
    "doc_upload": "Uploading documentation is not supported by this index.",
}


def answer(code: int, message: str) -> Response:
    """twine shows only the reason phrase, uv the body: the message goes in both."""
    reason = " ".join(message.split()).encode("iso-8859-1", "replace").decode("iso-8859-1")
    return Response(
        status=f"{code} {reason}",
        body=(message + "\n").encode(),
        content_type="text/plain",
        charset="utf-8",
    )


@view_config(route_name="upload", request_method="POST", permission=UPLOAD, require_csrf=False)
@view_config(
    route_name="upload_legacy_no_slash",
    request_method="POST",
    permission=UPLOAD,
    require_csrf=False,
)
@view_config(route_name="upload_root", request_method="POST", permission=UPLOAD, require_csrf=False)
def upload(request: Request) -> Response:
    try:
        return _upload(request)
    finally:
        close_file_parts(request)


def _upload(request: Request) -> Response:
    action = request.params.get(":action")
    if action in GONE:
        return answer(410, GONE[action])
    if action != "file_upload":
        return answer(400, "Invalid or missing ':action' (expected 'file_upload').")
    content = request.POST.get("content")
    if not isinstance(content, cgi.FieldStorage) or content.file is None:
        return answer(400, "Upload payload does not have a file.")
    fields = {
        key: [str(v) for v in request.POST.getall(key)]
        for key in set(request.POST.keys())
        if key not in FILE_PARTS
    }
    try:
        valid = validate_upload(
            fields,
            content.filename or "",
            content.file,
            max_size=request.app_settings.max_upload_size,
        )
        result = request.private.upload(valid, content.file, request.identity)
    except UploadRejected as exc:
        request.metrics.uploads.labels("rejected").inc()
        return answer(exc.status, exc.message)
    request.metrics.uploads.labels("duplicate" if result.duplicate else "stored").inc()
    if result.duplicate:
        return answer(200, f"OK: {result.filename} was already uploaded with the same bytes.")
    return answer(200, "OK")


def close_file_parts(request: Request) -> None:
    """WebOb spooled the body and its file parts to temp files: close them now."""
    for value in request.POST.values():
        if isinstance(value, cgi.FieldStorage) and value.file is not None:
            value.file.close()
    if request.environ.get("webob.is_body_seekable"):
        request.environ["wsgi.input"].close()  # WebOb's copy of the body, not waitress's
