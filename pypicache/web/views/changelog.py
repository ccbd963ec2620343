"""``/pypi``: this index's changelog over XML-RPC, what a downstream index or a mirror follows.

``changelog_last_serial``, ``changelog_since_serial`` and ``list_packages_with_serial``,
as PyPI answers them, in this index's own serial space.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from pypicache.cache import changes
from pypicache.services import Services
from pypicache.web.security import READ
from pypicache.web.xmlrpc import (
    BAD_PARAMS,
    CONTENT_TYPE,
    MAX_CALL_BYTES,
    NO_SUCH_METHOD,
    PARSE_ERROR,
    BadCall,
    fault,
    parse_call,
    result,
)


def _last_serial(services: Services) -> int:
    with services.database.unit_of_work() as db:
        return changes.last_serial(db)


def _since(services: Services, serial: object) -> list[list[object]]:
    if isinstance(serial, bool) or not isinstance(serial, int) or not -1 <= serial < 2**31:
        raise TypeError("changelog_since_serial takes one integer serial, 0 to 2**31 - 1")
    with services.database.unit_of_work() as db:
        entries = changes.since(db, serial)
    return [[e.name, "", calendar.timegm(e.at.timetuple()), e.action, e.serial] for e in entries]


def _with_serial(services: Services) -> dict[str, int]:
    with services.database.unit_of_work() as db:
        return changes.serials(db)


METHODS: dict[str, tuple[int, Callable[..., Any]]] = {
    "changelog_last_serial": (0, _last_serial),
    "changelog_since_serial": (1, _since),
    "list_packages_with_serial": (0, _with_serial),
}


@view_config(route_name="xmlrpc", request_method="POST", permission=READ, require_csrf=False)
def xmlrpc(request: Request) -> Response:
    """Faults for every call it cannot answer, as XML-RPC clients expect: never a 500."""
    body = request.body_file_raw.read(MAX_CALL_BYTES + 1)
    try:
        method, params = parse_call(body)
    except BadCall as exc:
        return _answer(fault(PARSE_ERROR, str(exc)))
    if method not in METHODS:
        return _answer(fault(NO_SUCH_METHOD, f"this index does not answer {method!r:.100}"))
    count, handler = METHODS[method]
    if len(params) != count:
        return _answer(fault(BAD_PARAMS, f"{method} takes {count} parameters"))
    try:
        value = handler(request.services, *params)
    except TypeError as exc:
        return _answer(fault(BAD_PARAMS, str(exc)))
    return _answer(result(value))


def _answer(body: bytes) -> Response:
    return Response(body=body, content_type=CONTENT_TYPE, charset="utf-8", cache_control="no-store")
