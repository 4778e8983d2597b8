"""What transfers report as they go: per-layer bars on a TTY, one line per layer otherwise, or nothing.

Transfers call `start`/`advance`/`done` per blob (keyed by the short digest docker shows) and
`line` for everything else; the three reporters decide what reaches the terminal.

The bars are docker's: one row per layer, redrawn in place with ANSI cursor movements, at most
ten times a second. They are drawn by hand: a progress library costs more start-up time than the
whole drawing does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

REDRAW_INTERVAL = 0.1
BAR_WIDTH = 50


def short(digest: object) -> str:
    """The 12 hex characters docker names a layer by."""
    return str(digest).split(":", 1)[-1][:12]


def human_bytes(size: float) -> str:
    """docker's progress units: decimal, three significant digits (`12.3MB`)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}"
        size /= 1000
    raise AssertionError("unreachable")


class Reporter:
    """Reports nothing (`-q`); the base of the others."""

    def line(self, text: str) -> None:
        pass

    def start(self, key: str, total: int, status: str) -> None:
        pass

    def advance(self, key: str, amount: int) -> None:
        pass

    def done(self, key: str, status: str) -> None:
        pass

    def close(self) -> None:
        """The end of one image's transfer: nothing more is drawn for its blobs."""


class LineReporter(Reporter):
    """Plain lines, one per layer when it finishes: logs and pipes stay readable."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def done(self, key: str, status: str) -> None:
        self.line(f"{key}: {status}")


class _Row:
    __slots__ = ("current", "status", "total")

    def __init__(self, status: str, total: int) -> None:
        self.status, self.total, self.current = status, total, 0

    def render(self, key: str) -> str:
        if self.total <= 0 or self.status not in ("Downloading", "Pushing"):
            return f"{key}: {self.status}"
        done = min(self.current, self.total)
        filled = BAR_WIDTH * done // self.total
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * max(0, BAR_WIDTH - filled - 1)
        return f"{key}: {self.status} [{bar}]  {human_bytes(done)}/{human_bytes(self.total)}"


class BarReporter(Reporter):
    """One row per layer under the plain lines, redrawn in place (a terminal only)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.rows: dict[str, _Row] = {}
        self._drawn = 0  # rows on the screen below the plain lines
        self._last = 0.0

    def _redraw(self, force: bool = False, above: str | None = None) -> None:
        now = self.clock()
        if not force and above is None and now - self._last < REDRAW_INTERVAL:
            return
        self._last = now
        # Up to the first row, then every row again, each line cleared first (\x1b[2K).
        out = [f"\x1b[{self._drawn}F" if self._drawn else ""]
        if above is not None:
            out.append(f"\x1b[2K{above}\n")
        out += [f"\x1b[2K{row.render(key)}\n" for key, row in self.rows.items()]
        self._drawn = len(self.rows)
        self.stream.write("".join(out))
        self.stream.flush()

    def line(self, text: str) -> None:
        self._redraw(above=text)

    def start(self, key: str, total: int, status: str) -> None:
        self.rows[key] = _Row(status, total)
        self._redraw(force=True)

    def advance(self, key: str, amount: int) -> None:
        row = self.rows.get(key)
        if row is not None:
            row.current += amount
            self._redraw()

    def done(self, key: str, status: str) -> None:
        row = self.rows.setdefault(key, _Row(status, 0))
        row.status = status
        self._redraw(force=True)

    def close(self) -> None:
        """Draw the rows a last time and leave them: what follows is written below them (the
        next image of a `pull -a` or `push -a` starts rows of its own)."""
        if self.rows:
            self._redraw(force=True)
        self.rows.clear()
        self._drawn = 0
