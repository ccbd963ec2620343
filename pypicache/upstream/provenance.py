"""PEP 740 provenance documents: the shape of one checked, and its canonical bytes.

pypicache checks shapes; it does not verify sigstore signatures or certificates.  A
client that wants to trust a provenance verifies it itself, as it would from PyPI.
"""

from __future__ import annotations

import json
from typing import Any

# A provenance document bigger than this is not one (PyPI's are a few kilobytes each).
MAX_DOCUMENT_BYTES = 1024 * 1024
# The only version PEP 740 defines, of provenance and attestation objects alike.
VERSION = 1


class InvalidProvenance(ValueError):
    """A provenance document or attestations of the wrong shape; the message says why."""


def checked_document(body: bytes) -> bytes:
    """A provenance document (an upstream's) as we serve it: checked, in canonical JSON.

    Its shape is PEP 740's provenance object: ``version`` 1 and ``attestation_bundles``,
    a list of objects, each with a ``publisher`` object (of a ``kind``) and a list of
    ``attestations`` objects.  Keys the PEP does not name are kept (publishers are
    open-ended).
    """
    document = json_object(loads(body, "the provenance"), "the provenance")
    check_version(document, "the provenance")
    bundles = document.get("attestation_bundles")
    if not isinstance(bundles, list) or not bundles:
        raise InvalidProvenance("attestation_bundles is not a non-empty list")
    for i, value in enumerate(bundles):
        where = f"attestation_bundles[{i}]"
        bundle = json_object(value, where)
        publisher = json_object(bundle.get("publisher"), f"{where}.publisher")
        if not isinstance(publisher.get("kind"), str):
            raise InvalidProvenance(f"{where}.publisher.kind is not a string")
        attestations = bundle.get("attestations")
        if not isinstance(attestations, list) or not attestations:
            raise InvalidProvenance(f"{where}.attestations is not a non-empty list")
        for j, attestation in enumerate(attestations):
            json_object(attestation, f"{where}.attestations[{j}]")
    return canonical(document)


def canonical(data: object) -> bytes:
    """Sorted keys, no spaces, ASCII: the same document is always the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def loads(body: bytes, what: str) -> Any:
    """JSON of at most MAX_DOCUMENT_BYTES, without NaN or Infinity (which JSON has not)."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise InvalidProvenance(f"{what} is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidProvenance(f"{what} is not JSON: {exc}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidProvenance(f"{where} is not a JSON object")
    return value


def check_version(value: dict[str, Any], where: str) -> None:
    version = value.get("version")
    if type(version) is not int or version != VERSION:
        raise InvalidProvenance(f"{where} has version {version!r:.20}, not {VERSION}")
