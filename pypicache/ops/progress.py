"""Progress of long commands: a bar redrawn in place on a terminal, plain lines everywhere else."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

# A terminal redraw costs little, but hundreds per second would still flicker and slow us down.
REDRAW_INTERVAL = 0.1
BAR_WIDTH = 24


def format_bytes(count: float) -> str:
    """Sizes the way people read them: 1.4 MB, 980 kB, 12 B."""
    units = ("B", "kB", "MB", "GB", "TB")
    value, step = float(count), 0
    while value >= 1000 and step < len(units) - 1:
        value, step = value / 1000, step + 1
    return f"{value:.0f} B" if step == 0 else f"{value:.1f} {units[step]}"


class Progress:
    """Shows how far a command got.

    On a terminal one status line is redrawn (a bar when the total is known); in a log or a
    pipe every step is its own line, so nothing is lost to carriage returns.  Progress goes
    to stderr so a command's result on stdout stays clean.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        count_bytes: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._count_bytes = count_bytes
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._item = ""
        self._drawn_at = 0.0
        self._line_shown = False

    def update(self, item: str, advance: int = 0) -> None:
        """Record ``advance`` more units done and show ``item`` as what happens now."""
        self.done += advance
        self._item = item
        if not self._tty:
            self._stream.write(f"{self.label}: {item}{self._amount(' (', ')')}\n")
            self._stream.flush()
        elif time.monotonic() - self._drawn_at >= REDRAW_INTERVAL:
            self._draw()

    def advance(self, amount: int) -> None:
        """Count ``amount`` more units (bytes of a blob, say); only a terminal shows it."""
        self.done += amount
        if self._tty and time.monotonic() - self._drawn_at >= REDRAW_INTERVAL:
            self._draw()

    def note(self, line: str) -> None:
        """A line that stays (a warning, a skipped file), above the status line on a terminal."""
        if self._tty and self._line_shown:
            self._stream.write("\r\x1b[K")
        self._stream.write(f"{self.label}: {line}\n")
        if self._tty and self._line_shown:
            self._draw()
        self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the status line."""
        if self._tty and self._line_shown:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
            self._line_shown = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        parts = [self.label]
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
        parts.append(self._amount("", ""))
        parts.append(self._item)
        line = " ".join(p for p in parts if p)[: max(width - 1, 10)]
        self._stream.write("\r\x1b[K" + line)
        self._stream.flush()
        self._drawn_at = time.monotonic()
        self._line_shown = True

    def _amount(self, before: str, after: str) -> str:
        show = format_bytes if self._count_bytes else str
        if self.total is not None:
            return f"{before}{show(self.done)}/{show(self.total)}{after}"
        if self.done:
            return f"{before}{show(self.done)}{after}"
        return ""
