"""README.rst is the package's long description: it must render, as PyPI renders it."""

from __future__ import annotations

import io
from pathlib import Path

from readme_renderer.rst import render

README = Path(__file__).resolve().parents[2] / "README.rst"


def test_the_readme_renders_without_errors():
    problems = io.StringIO()
    assert render(README.read_text(), stream=problems) is not None, problems.getvalue()
    assert "ERROR" not in problems.getvalue()
