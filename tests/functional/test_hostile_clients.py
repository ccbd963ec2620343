"""Hostile clients against the real app on waitress: odd Range headers, broken multipart
bodies, zip bombs, and uploaders trying to take over an upstream name."""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import zipfile

import pytest
import requests
from sqlalchemy import func, select

from pypicache.models import Alarm, AuditEntry, File
from tests.conftest import IndexFactory, RunningIndex
from tests.functional.test_private import Db, blobs, installed, page, upload_url
from tests.support.clients import make_venv, pip_install
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.uploads import form_fields, post_upload, twine_upload

PASSWORD = "correct horse battery"


@pytest.fixture
def cached_file(index: RunningIndex, upstream: FakeUpstream) -> tuple[str, bytes]:
    """The URL of a wheel pypicache has stored, and its bytes."""
    wheel = make_wheel("ranged", "1.0", extra_files={"data.bin": bytes(range(256)) * 40})
    upstream.publish(wheel)
    url = f"{index.url}/packages/ranged/{wheel.filename}"
    first = requests.get(url, timeout=10)
    assert first.status_code == 200
    assert first.content == wheel.content
    return url, wheel.content


@pytest.mark.parametrize(
    ("header", "status", "part"),
    [
        ("bytes=0-9", 206, slice(0, 10)),
        ("bytes=10-", 206, slice(10, None)),
        ("bytes=-10", 206, slice(-10, None)),
        ("BYTES=0-9", 206, slice(0, 10)),
        ("bytes=0-" + "9" * 5000, 206, slice(None)),
        ("bytes=-" + "9" * 5000, 206, slice(None)),
        ("bytes=" + "9" * 5000 + "-", 416, None),
        ("bytes=" + "9" * 30 + "-" + "9" * 29, 200, slice(None)),  # start > end: ignored
        ("bytes=\u0661-\u0662", 200, slice(None)),  # Arabic-Indic digits
        ("bytes=\uff10-\uff19", 200, slice(None)),  # fullwidth digits
        ("bytes=+1-5", 200, slice(None)),
        ("bytes= 1 - 5", 200, slice(None)),
        ("bytes=" + ",".join(["0-0"] * 3000), 200, slice(None)),
        ("bytes=", 200, slice(None)),
        ("bytes=-", 200, slice(None)),
        ("bytes=-0", 416, None),
        ("bytes=9-3", 200, slice(None)),
        ("items=0-1", 200, slice(None)),
    ],
)
def test_any_range_header_gets_206_416_or_the_whole_file(cached_file, header, status, part):
    url, content = cached_file
    response = requests.get(url, headers={"Range": header.encode("utf-8")}, timeout=10)
    assert response.status_code == status, response.text
    if status == 416:
        assert response.headers["Content-Range"] == f"bytes */{len(content)}"
        return
    assert response.content == content[part]
    if status == 206:
        start = range(len(content))[part][0]
        end = start + len(response.content) - 1
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(content)}"


@pytest.mark.parametrize(
    "if_range", ["\u0661", '"sha256:\uff10"', "W/x", "", "Thu, 01 Jan 1970 00:00:00 GMT"]
)
def test_an_odd_if_range_sends_the_whole_file(cached_file, if_range):
    url, content = cached_file
    response = requests.get(
        url, headers={"Range": "bytes=0-9", "If-Range": if_range.encode("utf-8")}, timeout=10
    )
    assert response.status_code == 200
    assert response.content == content


def test_if_range_with_the_etag_sends_the_range(cached_file):
    url, content = cached_file
    etag = requests.head(url, timeout=10).headers["ETag"]
    response = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=10)
    assert response.status_code == 206
    assert response.content == content[:10]


@pytest.mark.parametrize(
    "accept", ["\u0661/\u0662", "*/*;q=nan", "text/html;q=\u0661", ";;;,,,/", "a/b;" * 2000]
)
def test_any_accept_header_gets_a_page_or_406(index, upstream, accept):
    upstream.publish(make_wheel("accepted", "1.0"))
    response = requests.get(
        index.simple_url + "accepted/", headers={"Accept": accept.encode("utf-8")}, timeout=10
    )
    assert response.status_code in (200, 406), response.text


# -- multipart ---------------------------------------------------------------------------


@pytest.fixture
def site(make_index: IndexFactory, upstream: FakeUpstream):
    index = make_index(upstream.simple_url)
    db = Db(index)
    db.accounts.add_user("alice", PASSWORD)
    db.accounts.add_user("root", PASSWORD, admin=True)
    yield index, db
    db.engine.dispose()


def raw_post(index: RunningIndex, content_type: str, body: bytes) -> tuple[int, bytes]:
    """POST exactly these bytes, as a client that builds its own request would."""
    host, port = index.url.removeprefix("http://").rsplit(":", 1)
    request = (
        b"POST /legacy/ HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Authorization: Basic " + _basic("alice", PASSWORD) + b"\r\n"
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _basic(user: str, password: str) -> bytes:
    return base64.b64encode(f"{user}:{password}".encode())


def _part(name: bytes, value: bytes, filename: bytes | None = None) -> bytes:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"--XyZ\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"


def _good_parts() -> bytes:
    wheel = make_wheel("multi", "1.0")
    fields = form_fields(wheel)
    body = b"".join(_part(k.encode(), v.encode()) for k, v in fields.items())
    return body + _part(b"content", wheel.content, wheel.filename.encode())


MULTIPART = "multipart/form-data; boundary=XyZ"


@pytest.mark.parametrize(
    ("content_type", "body", "phrase"),
    [
        (MULTIPART, _good_parts()[:-200], ""),  # truncated in the file part
        (MULTIPART, _good_parts()[:40], ""),  # truncated in the headers
        ("multipart/form-data; boundary=Other", _good_parts() + b"--XyZ--\r\n", ""),
        ("multipart/form-data", _good_parts() + b"--XyZ--\r\n", "boundary"),
        ("multipart/form-data; boundary=" + "x" * 300, b"--x\r\n", "boundary"),
        (MULTIPART, _part(b"\xff\xfename", b"v") + _good_parts() + b"--XyZ--\r\n", "Malformed"),
        (MULTIPART, _part(b"name", b"\xff\xfe") + _good_parts() + b"--XyZ--\r\n", "Malformed"),
        (MULTIPART, _part(b"f", b"") * 5000 + _good_parts() + b"--XyZ--\r\n", "fields"),
        (
            MULTIPART,
            _part(b":action", b"file_upload") + _part(b"content", b"just text") + b"--XyZ--\r\n",
            "does not have a file",
        ),
        (
            MULTIPART,
            _part(b"summary", b"x", b"a.txt") + _good_parts() + b"--XyZ--\r\n",
            "text field",
        ),
        (MULTIPART, b"--XyZ\r\n\r\nnameless\r\n" + _good_parts() + b"--XyZ--\r\n", ""),
        (MULTIPART, b"", ""),
        ("application/json", b"{}", "multipart/form-data"),
        ("text/plain", b"\xff" * 100, "multipart/form-data"),
    ],
)
def test_a_malformed_multipart_body_is_a_400_with_a_reason(site, content_type, body, phrase):
    index, db = site
    before = blobs(index)
    status, text = raw_post(index, content_type, body)
    assert status == 400, text
    assert phrase.encode() in text
    assert blobs(index) == before
    assert db.query(select(func.count()).select_from(File))[0][0] == 0


def test_a_well_formed_raw_multipart_body_is_accepted(site):
    index, _db = site
    status, text = raw_post(index, MULTIPART, _good_parts() + b"--XyZ--\r\n")
    assert status == 200, text
