"""The legacy upload API (POST /legacy/), as twine and ``uv publish`` speak it."""

from __future__ import annotations

import cgi

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from webob.multidict import MultiDict

from pypicache.cache.indexes import MAIN
from pypicache.errors import UploadRejected
from pypicache.private.distfiles import validate_upload
from pypicache.web.security import UPLOAD

# Everything but these is a metadata field; the signature is accepted and ignored,
# the attestations (PEP 740) are kept as the file's provenance.
FILE_PARTS = ("content", "gpg_signature", "attestations")
GONE = {
    "submit": "Project pre-registration is no longer required or supported; upload your files.",
    "submit_pkg_info": "Project pre-registration is no longer required or supported; "
    "upload your files.",
    "doc_upload": "Uploading documentation is not supported by this index.",
}
# twine sends about 25 fields (more with many classifiers); the cap bounds the parser's memory.
MAX_FIELDS = 1000
_FORM = "pypicache.upload_form"


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
@view_config(
    route_name="index_upload", request_method="POST", permission=UPLOAD, require_csrf=False
)
def upload(request: Request) -> Response:
    try:
        return _upload(request)
    finally:
        close_file_parts(request)


def _upload(request: Request) -> Response:
    try:
        form = read_form(request)
    except UploadRejected as exc:
        return answer(exc.status, exc.message)
    action = form.get(":action")
    if action is None:
        try:
            action = request.GET.get(":action")
        except UnicodeDecodeError:
            return answer(400, "Malformed query string: it is not UTF-8.")
    if action in GONE:
        return answer(410, GONE[action])
    if action != "file_upload":
        return answer(400, "Invalid or missing ':action' (expected 'file_upload').")
    content = form.get("content")
    if not isinstance(content, cgi.FieldStorage) or content.file is None:
        return answer(400, "Upload payload does not have a file.")
    fields: dict[str, list[str]] = {}
    for key, value in form.items():
        if not key:
            return answer(400, "Malformed multipart/form-data body: a part has no field name.")
        if key in FILE_PARTS:
            continue
        if not isinstance(value, str):
            return answer(400, f"Field '{key}' must be a text field, not a file.")
        fields.setdefault(key, []).append(value)
    attestations = form.getall("attestations")
    if len(attestations) > 1 or not all(isinstance(a, str) for a in attestations):
        return answer(400, "Field 'attestations' must be one text field.")
    try:
        valid = validate_upload(
            fields,
            content.filename or "",
            content.file,
            max_size=request.services.settings.max_upload_size,
            attestations=attestations[0] if attestations else None,
        )
        index = request.matchdict.get("index", MAIN) if request.matchdict else MAIN
        request.services.guard.refuse_upload(index, valid.project)
        result = request.services.private.upload(valid, content.file, request.identity, index=index)
    except UploadRejected as exc:
        request.services.metrics.uploads.labels("rejected").inc()
        return answer(exc.status, exc.message)
    request.services.metrics.uploads.labels("duplicate" if result.duplicate else "stored").inc()
    if result.duplicate:
        return answer(200, f"OK: {result.filename} was already uploaded with the same bytes.")
    return answer(200, "OK")


def read_form(request: Request) -> MultiDict:
    """The multipart/form-data body, parsed once; a malformed one is a 400 with the reason.

    Parsed here rather than by WebOb's ``request.POST``: to cap the number of parts, to
    refuse bytes that are not UTF-8 instead of replacing them, and because ``cgi`` reports
    a bad body with ValueError and WebOb fails on nested parts, both 500s otherwise.
    """
    if _FORM in request.environ:
        return request.environ[_FORM]
    if request.content_type != "multipart/form-data":
        raise UploadRejected(
            f"Send the upload as multipart/form-data, not {request.content_type or 'nothing'!r}."
        )
    request.make_body_seekable()
    request.body_file_raw.seek(0)
    environ = {**request.environ, "QUERY_STRING": ""}
    environ.setdefault("CONTENT_LENGTH", "0")
    try:
        storage = cgi.FieldStorage(
            fp=request.body_file,
            environ=environ,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
        form = MultiDict()
        for part in storage.list or ():
            value = part if part.filename else part.value
            if not isinstance(value, str | cgi.FieldStorage):
                raise ValueError(f"part {part.name!r} holds other parts")
            form.add(part.name, value)
    except (ValueError, TypeError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
        request.environ[_FORM] = MultiDict()  # nothing to parse again, or to close
        raise UploadRejected(f"Malformed multipart/form-data body: {exc}") from None
    request.environ[_FORM] = form
    return form


def close_file_parts(request: Request) -> None:
    """WebOb spooled the body and its file parts to temp files: close them now."""
    form = request.environ.get(_FORM)
    if form is None:
        try:
            form = request.POST
        except Exception:  # WebOb fails on malformed bodies in several ways; none left files
            form = MultiDict()
    for value in form.values():
        if isinstance(value, cgi.FieldStorage) and value.file is not None:
            value.file.close()
    if request.environ.get("webob.is_body_seekable"):
        request.environ["wsgi.input"].close()  # WebOb's copy of the body, not waitress's
