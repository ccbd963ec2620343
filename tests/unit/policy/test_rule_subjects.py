"""What a rule names: PEP 508 requirements, PROJECT==VERSION, patterns; all from admins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pypicache.policy.rules import (
    Block,
    PolicyProblem,
    Rule,
    read_block,
    read_pattern,
    read_reason,
    read_release,
)


def block(subject: str) -> Block:
    _name, specifier = read_block(subject)
    rule = Rule(1, "block", None, subject, "why", "cli", None, None)  # type: ignore[arg-type]
    return Block(rule, specifier)


def test_a_block_names_a_normalized_project_and_maybe_versions():
    assert read_block("Evil_Pkg") == ("evil-pkg", None)
    name, specifier = read_block("urllib3>=3")
    assert name == "urllib3"
    assert str(specifier) == ">=3"


@pytest.mark.parametrize(
    ("subject", "version", "blocked"),
    [
        ("requests==2.99.0", "2.99.0", True),
        ("requests==2.99.0", "2.99", True),
        ("requests==2.99.0", "2.32.0", False),
        ("urllib3>=3", "3.1rc1", True),
        ("urllib3>=3", "3.0rc1", False),
        ("urllib3>=3", "2.2", False),
        ("evilpkg", "anything", True),
        ("requests==2.99.0", "not a version", True),
        ("requests==2.99.0", None, True),
    ],
)
def test_a_block_holds_the_versions_it_names_and_any_it_cannot_read(
    subject: str, version: str | None, blocked: bool
):
    assert block(subject).matches(version) is blocked


@pytest.mark.parametrize(
    "subject", ["", "pkg; os_name == 'nt'", "pkg[extra]", "pkg @ https://example.org/x.whl", "=="]
)
def test_a_block_of_anything_but_a_project_and_versions_is_refused(subject: str):
    with pytest.raises(PolicyProblem):
        read_block(subject)


def test_a_release_is_project_and_exact_version():
    assert read_release("Foo.Bar==1.0.0") == ("foo-bar", "1.0.0")
    for bad in ("foo", "foo>=1", "==1.0", "foo==", "foo==not-a-version"):
        with pytest.raises(PolicyProblem):
            read_release(bad)


@given(st.text(max_size=60))
def test_any_subject_is_read_or_refused_with_a_reason(text: str):
    for read in (read_block, read_release, read_pattern):
        try:
            read(text)
        except PolicyProblem as exc:
            message = str(exc)
        else:
            continue
        assert message


@given(st.text(max_size=1_200))
def test_a_kept_reason_is_one_printable_line_or_refused(text):
    try:
        reason = read_reason(text)
    except PolicyProblem:
        return
    assert reason
    assert reason == reason.strip()
    assert len(reason) <= 1_000
    assert "\n" not in reason
    assert "\r" not in reason
    assert "  " not in reason
    assert all(c.isprintable() or c == " " for c in reason)


def test_a_reason_with_an_escape_sequence_is_refused():
    with pytest.raises(PolicyProblem, match="U\\+001B"):
        read_reason("compromised \x1b[31mrelease")
    assert read_reason("  worm\n  spreading\t") == "worm spreading"


def test_a_requirement_whose_name_no_project_can_have_is_refused():
    with pytest.raises(PolicyProblem, match="names no project"):
        read_block("0_")
