"""XML-RPC calls from outside: read within limits, answered as results or faults."""

from __future__ import annotations

import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

# A call this index answers names a method and a number at most: kilobytes are plenty.
MAX_CALL_BYTES = 64 * 1024
PARSE_ERROR = -32700
NO_SUCH_METHOD = -32601
BAD_PARAMS = -32602
CONTENT_TYPE = "text/xml"


class BadCall(ValueError):
    """Not an XML-RPC call this index reads; the message says why."""


def parse_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """The method and parameters of an XML-RPC call.

    No document type is accepted, so no entity is ever expanded, whatever the XML
    parser would allow.
    """
    if len(body) > MAX_CALL_BYTES:
        raise BadCall(f"the call is over {MAX_CALL_BYTES} bytes")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise BadCall("a call must not declare a document type or entities")
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=True)
    except (ExpatError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise BadCall(f"not an XML-RPC call: {exc}") from None
    if not isinstance(method, str) or not method:
        raise BadCall("the call names no method")
    return method, params


def result(value: Any) -> bytes:
    return xmlrpc.client.dumps((value,), methodresponse=True).encode()


def fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode()
