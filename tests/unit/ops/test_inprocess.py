"""The in-process index answers only the client its command started."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pypicache.ops.inprocess import USER, OneTimePassword


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [environ.get("HTTP_AUTHORIZATION", "no credentials").encode()]


def call(guard: OneTimePassword, user: str | None, password: str = "") -> tuple[str, bytes]:
    environ: dict[str, Any] = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        environ["HTTP_AUTHORIZATION"] = f"Basic {token}"
    statuses = []
    body = b"".join(guard(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], body


@pytest.mark.parametrize(
    ("user", "password"), [(None, ""), (USER, "wrong"), ("alice", "s3cret"), (USER, "")]
)
def test_anyone_else_is_turned_away(user: str | None, password: str):
    status, _ = call(OneTimePassword(app, "s3cret"), user, password)
    assert status == "401 Unauthorized"


def test_the_command_gets_through_and_its_password_goes_no_further():
    status, body = call(OneTimePassword(app, "s3cret"), USER, "s3cret")
    assert status == "200 OK"
    assert body == b"no credentials", "the app never looks up an account for it"
