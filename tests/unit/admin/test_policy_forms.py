"""What the Policy page's forms read: an allowlist's patterns, every one checked first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.admin.policy import read_patterns
from pypicache.policy.rules import PolicyProblem, read_pattern


def test_patterns_are_separated_by_commas_or_whitespace_and_normalized():
    assert read_patterns(" Acme-*, numpy\trequests\n") == ["acme-*", "numpy", "requests"]


@pytest.mark.parametrize("text", ["", " , ", "acme-* ../etc", "ok <b>"])
def test_no_pattern_or_one_bad_pattern_refuses_them_all(text: str):
    with pytest.raises(PolicyProblem):
        read_patterns(text)


@given(st.text(max_size=200))
def test_any_form_text_gives_checked_patterns_or_a_refusal_never_a_crash(text: str):
    try:
        patterns = read_patterns(text)
    except PolicyProblem:
        return
    assert patterns
    for pattern in patterns:
        assert read_pattern(pattern) == pattern, "stored as read"
        assert not any(c.isspace() or c == "," for c in pattern)
