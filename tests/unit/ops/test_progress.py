"""Progress: plain lines in logs and pipes, one line redrawn in place on a terminal."""

from __future__ import annotations

import io

import pytest

from pypicache.ops import progress
from pypicache.ops.progress import Progress, format_bytes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with Progress("export", 2000, count_bytes=True, stream=out) as shown:
        shown.update("a.whl")
        shown.advance(1000)
        shown.update("b.whl")
        shown.advance(1000)
        shown.note("skipped c.whl")
    assert out.getvalue().splitlines() == [
        "export: a.whl (0 B/2.0 kB)",
        "export: b.whl (1.0 kB/2.0 kB)",
        "export: skipped c.whl",
    ]


def test_a_bar_redrawn_in_place_on_a_terminal(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(progress, "REDRAW_INTERVAL", 0)
    out = Terminal()
    with Progress("import", 4, stream=out) as shown:
        shown.update("a.whl", advance=2)
        shown.note("left out b.whl")
    text = out.getvalue()
    assert "\r\x1b[Kimport [" + "#" * 12 + "-" * 12 + "] 2/4 a.whl" in text
    # The note stays on a line of its own, and the bar comes back below it.
    assert "\r\x1b[Kimport: left out b.whl\n\r\x1b[Kimport [" in text
    assert text.endswith("\n")
    assert "\n" not in text.split("left out b.whl\n")[1][:-1], "one status line, redrawn"


def test_no_total_counts_what_is_done():
    out = Terminal()
    with Progress("warm", stream=out) as shown:
        shown.update("got a.whl", advance=1)
    assert "warm 1 got a.whl" in out.getvalue()


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_500_000, "1.5 MB"), (3e12, "3.0 TB")],
)
def test_format_bytes(count: float, text: str):
    assert format_bytes(count) == text
