"""A bundle manifest names blobs only by 64 lower-case hex digests; anything else is refused."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pypicache.errors import BundleError
from pypicache.ops.bundle import Manifest
from tests.support.bundles import sample

HEX = re.compile(r"[0-9a-f]{64}")


@given(
    st.sampled_from(["sha256", "metadata-sha256"]),
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="0123456789abcdefABCDEF./", min_size=60, max_size=68),
    ),
)
@example("sha256", "/etc/passwd")
@example("sha256", "../../../etc/passwd")
@example("metadata-sha256", "/etc/passwd")
@example("sha256", "A" * 64)
@example("sha256", "a" * 63)
@example("sha256", "a" * 64 + "\n")
def test_a_manifest_digest_is_taken_only_as_lower_case_hex(key: str, value: str):
    data = json.loads(sample().to_json())
    data["projects"][0]["files"][0][key] = value
    raw = json.dumps(data).encode()
    if HEX.fullmatch(value):
        manifest = Manifest.from_json(raw)
        assert all(HEX.fullmatch(sha256) for sha256 in manifest.blobs())
    else:
        with pytest.raises(BundleError, match="not a sha256 hex digest"):
            Manifest.from_json(raw)
