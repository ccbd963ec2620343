"""The multipart/form-data parser of POST /legacy/: any body is a form or an UploadRejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyramid.request import Request

from pypicache.errors import UploadRejected
from pypicache.web.views.upload import MAX_FIELDS, close_file_parts, read_form


def _request(content_type: str, body: bytes) -> Request:
    return Request.blank("/legacy/", method="POST", content_type=content_type, body=body)


def _part(name: bytes, value: bytes, extra: bytes = b"") -> bytes:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"' + extra
    return b"--B\r\n" + disposition + b"\r\n\r\n" + value + b"\r\n"


_PIECES = st.sampled_from(
    [
        b"--B\r\n", b"--B--\r\n", b"\r\n", b"\r\n\r\n", b"Content-Disposition: form-data; ",
        b'name="a"', b'name="content"; filename="x.whl"', b"Content-Type: text/plain; charset=",
        b"latin-1", b"nope", b"Content-Transfer-Encoding: base64\r\n", b"\xff\xfe", b"=",
        b"Content-Type: multipart/mixed; boundary=C\r\n", b"--C\r\n",
    ]
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(
    boundary=st.one_of(st.just("B"), st.text(max_size=20)),
    body=st.one_of(
        st.binary(max_size=300), st.lists(_PIECES | st.binary(max_size=8)).map(b"".join)
    ),
)
def test_any_body_is_a_form_or_a_rejection(boundary, body):
    content_type = f"multipart/form-data; boundary={boundary}"
    try:
        request = _request(content_type.encode("utf-8", "replace").decode("latin-1"), body)
    except (ValueError, UnicodeError):
        return  # WebOb refuses to build such a request; waitress never hands us one
    try:
        form = read_form(request)
    except UploadRejected as exc:
        rejection = exc
    else:
        rejection = None
        assert all(isinstance(key, str | None) for key in form)
    close_file_parts(request)
    assert rejection is None or (rejection.status == 400 and rejection.message)


def test_too_many_fields_are_refused():
    body = _part(b"f", b"") * (MAX_FIELDS + 1) + b"--B--\r\n"
    with pytest.raises(UploadRejected, match="Max number of fields"):
        read_form(_request("multipart/form-data; boundary=B", body))


def test_a_non_utf8_field_name_is_refused():
    body = _part(b"\xff", b"v") + b"--B--\r\n"
    with pytest.raises(UploadRejected, match="Malformed"):
        read_form(_request("multipart/form-data; boundary=B", body))


def test_a_form_is_parsed():
    body = _part(b":action", b"file_upload") + _part(b"content", b"PK", b'; filename="a.whl"')
    form = read_form(_request("multipart/form-data; boundary=B", body + b"--B--\r\n"))
    assert form[":action"] == "file_upload"
    assert form["content"].filename == "a.whl"
