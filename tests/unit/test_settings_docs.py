"""README.rst's settings tables and the declared settings: the same settings, the same defaults."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import docutils.core
import docutils.nodes
from pypi_simple import PYPI_SIMPLE_ENDPOINT

from pypicache.settings import DATABASE_KEY, DEFAULTS, SETTINGS, Settings

README = Path(__file__).resolve().parents[2] / "README.rst"
SETTING_NAME = re.compile(r"(pypicache\.\w+|sqlalchemy\.url)")
MIB = 1024 * 1024
# How a cell spells its default: "Default 300", "Default: ``auto``", "Default 128 MiB",
# "Default empty: ...", or "Empty (the default): ...".
SPELLED_DEFAULT = re.compile(
    r"\bDefault:? (?P<shown>``[^`]+``|(?:\d+(?: MiB)?|true|false|empty)(?!\w))"
    r"|\b(?P<empty>Empty) \(the default\)"
)
# The defaults README describes instead of spelling them, in its words after "Default: ";
# test_every_described_default_is_what_the_settings_make holds the code to each.
DESCRIBED = {
    "pypicache.upstream_url": "PyPI (the ``PYPI_SIMPLE_ENDPOINT`` of the pypi-simple library)",
    "pypicache.changelog_url": "``/pypi`` on the upstream's host",
    DATABASE_KEY: "SQLite at ``<data_dir>/pypicache.sqlite``",
    "pypicache.session_secret": "a random secret made on first start and kept in the database",
}


def _cells() -> dict[str, str]:
    """Each setting a README table row names in its first column: the row's text after it.

    As README.rst spells it (``literals`` kept), with whitespace collapsed to single spaces.
    """
    tree = docutils.core.publish_doctree(README.read_text(), settings_overrides={"report_level": 5})
    cells: dict[str, str] = {}
    for row in tree.findall(docutils.nodes.row):
        first, *rest = row.children
        text = " ".join(
            paragraph.rawsource
            for cell in rest
            for paragraph in cell.findall(docutils.nodes.paragraph)
        )
        for literal in first.findall(docutils.nodes.literal):
            if SETTING_NAME.fullmatch(literal.astext()):
                cells[literal.astext()] = " ".join(text.split())
    return cells


def _ini_spelling(match: re.Match[str]) -> str:
    """A default as README shows it, spelled as the ini would (as ``Setting.default`` is)."""
    shown = match["shown"]
    if match["empty"] or shown == "empty":
        return ""
    if shown.endswith(" MiB"):
        return str(int(shown.removesuffix(" MiB")) * MIB)
    if shown.startswith("``"):
        # A relative path is shown as one (``./pypicache-data``).
        return shown.strip("`").removeprefix("./")
    return shown


def test_every_declared_setting_is_in_a_readme_table():
    missing = sorted({s.key for s in SETTINGS} - set(_cells()))
    assert missing == []


def test_every_setting_in_a_readme_table_is_declared():
    unknown = sorted(set(_cells()) - {s.key for s in SETTINGS})
    assert unknown == []


def test_every_setting_has_a_one_line_help():
    assert all(s.help and "\n" not in s.help for s in SETTINGS)


def test_every_default_readme_spells_is_the_declared_one():
    wrong = {}
    for key, cell in _cells().items():
        if key in DESCRIBED:
            continue
        shown = list(SPELLED_DEFAULT.finditer(cell))
        assert len(shown) == 1, f"{key}: README should show one default, not {len(shown)}"
        if _ini_spelling(shown[0]) != DEFAULTS[key]:
            wrong[key] = (shown[0].group(), DEFAULTS[key])
    assert wrong == {}


def test_every_described_default_is_what_the_settings_make(tmp_path: Path):
    cells = _cells()
    reworded = [k for k, words in DESCRIBED.items() if f"Default: {words}" not in cells[k]]
    assert reworded == []
    assert DEFAULTS["pypicache.upstream_url"] == PYPI_SIMPLE_ENDPOINT
    # The others are unset ("") by default: the settings, or the first start, derive them.
    unset = DESCRIBED.keys() - {"pypicache.upstream_url"}
    assert {k: DEFAULTS[k] for k in unset} == dict.fromkeys(unset, "")
    settings = Settings.from_mapping(
        {}, environ={}, overrides={"pypicache.data_dir": str(tmp_path)}
    )
    upstream = urlsplit(PYPI_SIMPLE_ENDPOINT)
    assert settings.changelog_url == f"{upstream.scheme}://{upstream.netloc}/pypi"
    assert settings.database_url == f"sqlite:///{tmp_path / 'pypicache.sqlite'}"
    assert settings.session_secret == ""
