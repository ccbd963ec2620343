"""Operations endpoints and read_auth in process."""

from __future__ import annotations

from tests.support.dists import make_wheel


def test_health_says_ok(testapp):
    response = testapp.get("/health")
    assert response.status_int == 200
    assert response.text == "ok\n"


def test_status_is_json(testapp):
    response = testapp.get("/api/status")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    assert isinstance(response.json, dict)


def test_read_auth_refuses_anonymous_reads(make_testapp, upstream):
    upstream.publish(make_wheel("guarded", "1.0"))
    app = make_testapp(**{"pypicache.read_auth": "true"})
    response = app.get("/simple/guarded/", status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert upstream.count(path_contains="guarded") == 0
