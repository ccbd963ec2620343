"""README.rst's settings tables and the declared settings name the same settings."""

from __future__ import annotations

import re
from pathlib import Path

import docutils.core
import docutils.nodes

from pypicache.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.rst"
SETTING_NAME = re.compile(r"(pypicache\.\w+|sqlalchemy\.url)")


def _documented() -> set[str]:
    """The setting names in the first column of README's tables (rows naming a setting)."""
    tree = docutils.core.publish_doctree(README.read_text(), settings_overrides={"report_level": 5})
    names: set[str] = set()
    for row in tree.findall(docutils.nodes.row):
        first = row.children[0]
        for literal in first.findall(docutils.nodes.literal):
            if SETTING_NAME.fullmatch(literal.astext()):
                names.add(literal.astext())
    return names


def test_every_declared_setting_is_in_a_readme_table():
    missing = sorted({s.key for s in SETTINGS} - _documented())
    assert missing == []


def test_every_setting_in_a_readme_table_is_declared():
    unknown = sorted(_documented() - {s.key for s in SETTINGS})
    assert unknown == []


def test_every_setting_has_a_one_line_help():
    assert all(s.help and "\n" not in s.help for s in SETTINGS)
