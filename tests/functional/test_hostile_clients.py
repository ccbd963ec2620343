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
from tests.support.clients import installed, make_venv, pip_install
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.hostile import Answer, HostileUpstream
from tests.support.privatedb import Db, admin_cli, blobs, page, upload_url
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
        (b"bytes=0-\xb2", 200, slice(None)),  # latin-1 superscript two: isdigit(), not int()
        (b"bytes=\xb9-5", 200, slice(None)),
        (b"bytes=-\xb3", 200, slice(None)),
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
    raw = header if isinstance(header, bytes) else header.encode("utf-8")
    response = requests.get(url, headers={"Range": raw}, timeout=10)
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


def raw_post(
    index: RunningIndex, content_type: str, body: bytes, target: bytes = b"/legacy/"
) -> tuple[int, bytes]:
    """POST exactly these bytes, as a client that builds its own request would."""
    host, port = index.url.removeprefix("http://").rsplit(":", 1)
    request = (
        b"POST " + target + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
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
        (  # parts inside a part: WebOb's own parser fails on these with AttributeError
            MULTIPART,
            b'--XyZ\r\nContent-Disposition: form-data; name="nested"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Type: multipart/mixed; boundary=C\r\n\r\n--C--\r\n"
            + _good_parts()
            + b"--XyZ--\r\n",
            "Malformed",
        ),
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


# -- zip bombs ---------------------------------------------------------------------------


def test_a_wheel_zip_bomb_is_refused_and_nothing_is_stored(site, tmp_path):
    index, db = site
    wheel = make_wheel("bomb", "1.0")
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(wheel.content)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb,
    ):
        for info in source.infolist():
            bomb.writestr(info, source.read(info))
        bomb.writestr("bomb/zeros.bin", bytes(64 * 1024 * 1024))  # 64 MiB in about 64 KiB
    path = tmp_path / wheel.filename
    path.write_bytes(buffer.getvalue())
    before = blobs(index)
    result = twine_upload(upload_url(index), "alice", PASSWORD, path)
    assert result.returncode != 0
    assert "400" in result.stdout
    assert "unpacks to more than" in " ".join(result.stdout.split())  # twine wraps lines
    assert blobs(index) == before
    assert db.query(select(func.count()).select_from(File))[0][0] == 0
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest not in blobs(index)


# -- claiming upstream names -------------------------------------------------------------


def _alarms(db: Db) -> list[tuple[str, str]]:
    return db.query(select(Alarm.kind, Alarm.project))


def test_an_uploader_cannot_claim_a_name_the_upstream_has(site, upstream, tmp_path):
    index, db = site
    theirs = make_wheel("numpy", "2.0")
    upstream.publish(theirs)
    ours = make_wheel("numpy", "9.9")
    response = post_upload(
        upload_url(index), ("alice", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert response.status_code == 403, response.text
    assert "only an admin may claim" in response.reason
    assert "only an admin may claim" in response.text
    assert ours.sha256 not in blobs(index)
    assert _alarms(db) == []
    # Nothing changed: pip still installs the upstream's file.
    python = make_venv(tmp_path / "venv")
    result = pip_install(python, index.simple_url, "numpy")
    assert result.returncode == 0, result.stderr
    assert installed(python) == {"numpy": "2.0"}
    # Now cached from the upstream: refused again, without asking the upstream.
    upstream.clear_log()
    again = post_upload(
        upload_url(index), ("alice", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert again.status_code == 403
    assert page(index, "numpy").json()["versions"] == ["2.0"]


def test_an_uploader_may_create_a_name_the_upstream_does_not_have(site, upstream):
    index, db = site
    ours = make_wheel("fresh-name", "1.0")
    response = post_upload(
        upload_url(index), ("alice", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert response.status_code == 200, response.text
    assert upstream.count(path_prefix="/simple/fresh-name/") == 1
    assert page(index, "fresh-name").json()["versions"] == ["1.0"]
    assert _alarms(db) == []


def test_an_admin_claim_is_allowed_and_raises_an_alarm(site, upstream):
    index, db = site
    upstream.publish(make_wheel("requests-ng", "3.0"))
    ours = make_wheel("requests-ng", "1.0")
    response = post_upload(
        upload_url(index), ("root", PASSWORD), form_fields(ours), ours.filename, ours.content
    )
    assert response.status_code == 200, response.text
    assert page(index, "requests-ng").json()["versions"] == ["1.0"]
    assert _alarms(db) == [("upstream-claim", "requests-ng")]
    assert ("claim", "root") in db.query(select(AuditEntry.action, AuditEntry.actor))
    # A project an admin created: a member it was granted to may upload.
    assert admin_cli(index, "grant", "requests-ng", "alice").returncode == 0
    more = make_wheel("requests-ng", "1.1")
    granted = post_upload(
        upload_url(index), ("alice", PASSWORD), form_fields(more), more.filename, more.content
    )
    assert granted.status_code == 200, granted.text
    assert len(_alarms(db)) == 1


def test_an_upstream_that_cannot_be_asked_refuses_the_new_name(make_index, tmp_path):
    with HostileUpstream() as hostile:
        hostile.set("/simple/unsure/", Answer(500, {}, b"down"))
        index = make_index(hostile.simple_url)
        db = Db(index)
        try:
            db.accounts.add_user("alice", PASSWORD)
            ours = make_wheel("unsure", "1.0")
            response = post_upload(
                upload_url(index),
                ("alice", PASSWORD),
                form_fields(ours),
                ours.filename,
                ours.content,
            )
            assert response.status_code == 503, response.text
            assert "Cannot check the upstream" in response.reason
            assert ours.sha256 not in blobs(index)
        finally:
            db.engine.dispose()


def test_a_query_string_that_is_not_utf8_is_a_400(site):
    index, _db = site
    body = _part(b"protocol_version", b"1") + b"--XyZ--\r\n"
    status, text = raw_post(index, MULTIPART, body, target=b"/legacy/?%ff=%fe")
    assert status == 400, text
    assert b"not UTF-8" in text
