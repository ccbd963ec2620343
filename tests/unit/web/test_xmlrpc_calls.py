"""XML-RPC calls from outside: any bytes are read as a call or refused, never crash."""

from __future__ import annotations

import xmlrpc.client

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.web.xmlrpc import MAX_CALL_BYTES, BadCall, fault, parse_call, result


@given(st.binary(max_size=2000))
def test_any_bytes_are_a_call_or_a_bad_call(body):
    try:
        method, params = parse_call(body)
    except BadCall:
        return
    assert isinstance(method, str)
    assert method
    assert isinstance(params, tuple)


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=40),
    st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), max_size=3),
)
def test_a_call_made_by_xmlrpc_client_is_read_back(method, params):
    body = xmlrpc.client.dumps(tuple(params), methodname=method).encode()
    assert parse_call(body) == (method, tuple(params))


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_results_and_faults_are_what_clients_read(serial):
    assert xmlrpc.client.loads(result(serial)) == ((serial,), None)
    with pytest.raises(xmlrpc.client.Fault) as raised:
        xmlrpc.client.loads(fault(-32601, "no"))
    assert raised.value.faultCode == -32601


def test_entities_and_oversized_calls_are_refused():
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<methodCall><methodName>&b;</methodName></methodCall>"
    )
    with pytest.raises(BadCall, match="document type"):
        parse_call(laughs)
    big = xmlrpc.client.dumps(("x" * MAX_CALL_BYTES,), methodname="m").encode()
    with pytest.raises(BadCall, match="over"):
        parse_call(big)
