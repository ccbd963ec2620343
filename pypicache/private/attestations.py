"""Attestations uploaded with a file (PEP 740, twine ``--attestations``): checked, and
made into the provenance document served for the file.

The checks are of shape, and that each attestation's statement names this file and
its sha256.  Signatures and certificates are not verified: this refuses what is no
attestation, or one about another file, never one that is forged.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from pypicache.upstream.provenance import (
    MAX_DOCUMENT_BYTES,
    VERSION,
    InvalidProvenance,
    canonical,
    check_version,
    json_object,
    loads,
)

# Attestations one upload may carry (twine sends one per attestation file; PEP 740 knows
# two kinds of statement).
MAX_ATTESTATIONS = 16
# The statement types PEP 740 allows.
PREDICATE_TYPES = frozenset(
    {"https://slsa.dev/provenance/v1", "https://docs.pypi.org/attestations/publish/v1"}
)
# The publisher of attestations uploaded here: no trusted publisher vouched for them.
UPLOAD_PUBLISHER: dict[str, Any] = {"kind": "pypicache-upload", "claims": {}, "verified": False}


def checked_attestations(text: str, filename: str, sha256: str) -> list[dict[str, Any]]:
    """The ``attestations`` form field of an upload: a JSON list of attestation objects,
    each a statement about exactly this file (its name and sha256)."""
    attestations = loads(text.encode(), "the attestations")
    if not isinstance(attestations, list) or not attestations:
        raise InvalidProvenance("the attestations are not a non-empty JSON list")
    if len(attestations) > MAX_ATTESTATIONS:
        raise InvalidProvenance(f"more than {MAX_ATTESTATIONS} attestations")
    for i, attestation in enumerate(attestations):
        _check_attestation(attestation, f"attestation {i}", filename, sha256)
    return attestations


def uploaded_document(attestations: list[dict[str, Any]]) -> bytes:
    """The provenance document served for a file uploaded with ``attestations``."""
    bundle = {"publisher": UPLOAD_PUBLISHER, "attestations": attestations}
    document = canonical({"version": VERSION, "attestation_bundles": [bundle]})
    if len(document) > MAX_DOCUMENT_BYTES:
        raise InvalidProvenance(f"the attestations are larger than {MAX_DOCUMENT_BYTES} bytes")
    return document


def _check_attestation(value: object, where: str, filename: str, sha256: str) -> None:
    attestation = json_object(value, where)
    check_version(attestation, where)
    material = json_object(
        attestation.get("verification_material"), f"{where}: verification_material"
    )
    if not isinstance(material.get("certificate"), str):
        raise InvalidProvenance(f"{where}: verification_material.certificate is not a string")
    entries = material.get("transparency_entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidProvenance(
            f"{where}: verification_material.transparency_entries is not a list of objects"
        )
    envelope = json_object(attestation.get("envelope"), f"{where}: envelope")
    _base64(envelope.get("signature"), f"{where}: envelope.signature")
    raw = _base64(envelope.get("statement"), f"{where}: envelope.statement")
    statement = json_object(loads(raw, f"{where}: the statement"), f"{where}: the statement")
    if statement.get("predicateType") not in PREDICATE_TYPES:
        raise InvalidProvenance(f"{where}: a statement of an unknown predicateType")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise InvalidProvenance(f"{where}: the statement must have exactly one subject")
    subject = json_object(subjects[0], f"{where}: the statement's subject")
    name = subject.get("name")
    if not isinstance(name, str) or not same_distribution(name, filename):
        raise InvalidProvenance(f"{where} is about {name!r:.100}, not {filename}")
    digest = json_object(subject.get("digest"), f"{where}: the subject's digest")
    if digest.get("sha256") != sha256:
        raise InvalidProvenance(f"{where} is about other bytes than the file's")


def same_distribution(name: str, filename: str) -> bool:
    """Whether a statement's subject names the file (PEP 740: compared parsed, as a
    subject may spell the name normalized)."""
    if name == filename:
        return True
    try:
        if filename.endswith(".whl"):
            return name.endswith(".whl") and parse_wheel_filename(name) == parse_wheel_filename(
                filename
            )
        return parse_sdist_filename(name) == parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return False


def _base64(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidProvenance(f"{where} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidProvenance(f"{where} is not base64 text") from None
