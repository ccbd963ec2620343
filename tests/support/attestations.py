"""PEP 740 attestations and provenance documents for tests, in the shape twine uploads
and PyPI serves (the signatures are filler: pypicache does not verify them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

PUBLISH_PREDICATE = "https://docs.pypi.org/attestations/publish/v1"


def attestation(
    filename: str, sha256: str, *, predicate_type: str = PUBLISH_PREDICATE
) -> dict[str, Any]:
    """An attestation object whose in-toto statement is about ``filename`` with ``sha256``."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": filename, "digest": {"sha256": sha256}}],
        "predicateType": predicate_type,
        "predicate": None,
    }
    return {
        "version": 1,
        "verification_material": {
            "certificate": base64.b64encode(b"not a real certificate").decode(),
            "transparency_entries": [{"logIndex": "1", "kindVersion": {"kind": "dsse"}}],
        },
        "envelope": {
            "statement": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signature": base64.b64encode(b"not a real signature").decode(),
        },
    }


def provenance(filename: str, sha256: str, *, repository: str = "org/repo") -> dict[str, Any]:
    """A provenance object as PyPI serves it for a file published from GitHub Actions."""
    publisher = {
        "kind": "GitHub",
        "repository": repository,
        "workflow": "release.yml",
        "environment": None,
        "claims": None,
    }
    return {
        "version": 1,
        "attestation_bundles": [
            {"publisher": publisher, "attestations": [attestation(filename, sha256)]}
        ],
    }


def write_attestation(dist: Path, sha256: str, kind: str = "publish") -> Path:
    """``<dist>.<kind>.attestation`` next to the file, where twine looks for it."""
    path = dist.with_name(f"{dist.name}.{kind}.attestation")
    path.write_text(json.dumps(attestation(dist.name, sha256)))
    return path
