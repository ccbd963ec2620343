"""An upload's attestations: kept when they are attestations about the file, refused
otherwise, whatever the form field holds."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pypicache.private.attestations import (
    MAX_ATTESTATIONS,
    UPLOAD_PUBLISHER,
    checked_attestations,
    same_distribution,
    uploaded_document,
)
from pypicache.upstream.provenance import InvalidProvenance, checked_document
from tests.support.attestations import attestation

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
SHA = "b" * 64


def test_an_attestation_about_the_file_is_kept_and_served_as_an_unverified_bundle():
    sent = [attestation(WHEEL, SHA), attestation(WHEEL, SHA, predicate_type=SLSA)]
    kept = checked_attestations(json.dumps(sent), WHEEL, SHA)
    assert kept == sent
    document = json.loads(uploaded_document(kept))
    assert document == {
        "version": 1,
        "attestation_bundles": [{"publisher": UPLOAD_PUBLISHER, "attestations": sent}],
    }
    assert document["attestation_bundles"][0]["publisher"]["verified"] is False
    assert checked_document(uploaded_document(kept)) == uploaded_document(kept)


SLSA = "https://slsa.dev/provenance/v1"


@pytest.mark.parametrize(
    ("filename", "sha256", "why"),
    [
        ("other_pkg-1.0-py3-none-any.whl", SHA, "is about"),
        ("demo_pkg-2.0-py3-none-any.whl", SHA, "is about"),
        (WHEEL, "c" * 64, "other bytes"),
    ],
)
def test_an_attestation_about_another_file_is_refused(filename: str, sha256: str, why: str):
    with pytest.raises(InvalidProvenance, match=why):
        checked_attestations(json.dumps([attestation(filename, sha256)]), WHEEL, SHA)


def test_a_subject_may_spell_the_name_normalized():
    assert same_distribution("Demo.Pkg-1.0.tar.gz", "demo_pkg-1.0.tar.gz")
    assert same_distribution("demo_pkg-1.0-py3-none-any.whl", "Demo_Pkg-1.0-py3-none-any.whl")
    assert not same_distribution("demo_pkg-1.0.tar.gz", "demo_pkg-1.0-py3-none-any.whl")
    assert not same_distribution("not a file name", "demo_pkg-1.0.tar.gz")


def broken(**changes: Any) -> dict[str, Any]:
    value = attestation(WHEEL, SHA)
    for path, new in changes.items():
        *parents, key = path.split("__")
        target = value
        for parent in parents:
            target = target[parent]
        target[key] = new
    return value


@pytest.mark.parametrize(
    "value",
    [
        broken(version=2),
        broken(version=True),
        broken(verification_material=None),
        broken(verification_material__certificate=1),
        broken(verification_material__transparency_entries="x"),
        broken(envelope__signature="not base64!"),
        broken(envelope__statement=base64.b64encode(b"not json").decode()),
        broken(envelope__statement=base64.b64encode(b'{"subject": []}').decode()),
        "an attestation",
    ],
)
def test_what_is_no_attestation_is_refused(value: object):
    with pytest.raises(InvalidProvenance):
        checked_attestations(json.dumps([value]), WHEEL, SHA)


def test_too_many_attestations_are_refused():
    many = [attestation(WHEEL, SHA)] * (MAX_ATTESTATIONS + 1)
    with pytest.raises(InvalidProvenance, match="more than"):
        checked_attestations(json.dumps(many), WHEEL, SHA)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(st.text(max_size=60) | json_values.map(json.dumps))
@example("[]")
@example("NaN")
@example("[" * 100_000)
@example(json.dumps([attestation(WHEEL, SHA)]).replace('"version": 1', '"version": 1.0'))
def test_any_form_value_is_kept_only_as_attestations_about_the_file(text: str):
    try:
        kept = checked_attestations(text, WHEEL, SHA)
    except InvalidProvenance:
        return
    assert isinstance(kept, list)
    assert 1 <= len(kept) <= MAX_ATTESTATIONS
    for item in kept:
        statement = json.loads(base64.b64decode(item["envelope"]["statement"]))
        assert statement["subject"][0]["digest"]["sha256"] == SHA
