"""What changelog entries say was removed: the upstream's words, read without trust."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pypicache.follower.changelog import ChangelogEntry, Withdrawal, withdrawal
from pypicache.follower.follower import Change


def entry(action: str, version: str | None = None, serial: int = 1) -> ChangelogEntry:
    return ChangelogEntry("lib", version, 0, action, serial)


def test_warehouse_removal_actions_are_read():
    assert withdrawal(entry("remove project")) == Withdrawal(project=True)
    assert withdrawal(entry("remove release", "1.0")) == Withdrawal(version="1.0")
    assert withdrawal(entry("remove file lib-1.0.tar.gz", "1.0")) == Withdrawal(
        filename="lib-1.0.tar.gz"
    )
    assert withdrawal(entry("add py3 file lib-1.0-py3-none-any.whl", "1.0")) == Withdrawal(
        filename="lib-1.0-py3-none-any.whl", added=True
    )
    assert withdrawal(entry("new release", "1.0")) is None
    assert withdrawal(entry("remove release")) is None, "no version: nothing to withdraw"


def test_a_filename_that_is_no_filename_withdraws_nothing():
    for action in (
        "remove file ../../etc/passwd",
        "remove file a\nb",
        "remove file ",
        "remove file ..",
    ):
        assert withdrawal(entry(action)) is None


def test_a_file_removed_then_added_again_was_replaced_not_withdrawn():
    change = Change(-1, removal=False)
    change = change.then(entry("remove file lib-1.0.tar.gz", "1.0", 2))
    assert change.removed_files == {"lib-1.0.tar.gz"}
    change = change.then(entry("add source file lib-1.0.tar.gz", "1.0", 3))
    assert change.removed_files == frozenset()
    assert not change.withdraws
    change = change.then(entry("remove project", serial=4)).then(entry("create", serial=5))
    assert change.removed_project, "a project removed stays removed for the round"
    assert not change.removal, "the newest change is what the refetch expects"


@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=40)))
def test_any_action_is_read_as_a_removal_of_a_plain_filename_or_as_none(action, version):
    found = withdrawal(entry(action, version))
    if found is None or found.filename is None:
        return
    assert "/" not in found.filename
    assert "\\" not in found.filename
    assert found.filename not in ("", ".", "..")
    assert all(ord(c) >= 0x20 and c != "\x7f" for c in found.filename)
    assert action.endswith(found.filename)
