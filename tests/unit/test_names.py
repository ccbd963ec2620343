from __future__ import annotations

import pytest

from pypicache.errors import InvalidName
from pypicache.names import normalize_project


@pytest.mark.parametrize(
    "name",
    [
        "friendly-bard",
        "Friendly-Bard",
        "FRIENDLY-BARD",
        "friendly.bard",
        "friendly_bard",
        "friendly--bard",
        "FrIeNdLy-._.-bArD",
    ],
)
def test_normalization(name):
    assert normalize_project(name) == "friendly-bard"


@pytest.mark.parametrize("name", ["", "-foo", "foo-", "foo\n", "../etc", "a b", "a/b", "é"])
def test_invalid_names(name):
    with pytest.raises(InvalidName):
        normalize_project(name)
