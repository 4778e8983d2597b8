"""What transfers report as they go: per-layer bars on a TTY, one line per layer otherwise, or nothing.

Transfers call `start`/`advance`/`done` per blob (keyed by the short digest docker shows) and
`line` for everything else; the three reporters decide what reaches the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID


def short(digest: object) -> str:
    """The 12 hex characters docker names a layer by."""
    return str(digest).split(":", 1)[-1][:12]


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
        pass


class LineReporter(Reporter):
    """Plain lines, one per layer when it finishes: logs and pipes stay readable."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def done(self, key: str, status: str) -> None:
        self.line(f"{key}: {status}")


class BarReporter(Reporter):
    """rich progress bars, one per layer, for a terminal."""

    def __init__(self, stream: TextIO) -> None:
        # Imported here: rich costs start-up time that only a terminal user gets anything for.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=stream, highlight=False)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), console=self.console, transient=False)
        self.tasks: dict[str, TaskID] = {}
        self.bars.start()

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)

    def start(self, key: str, total: int, status: str) -> None:
        self.tasks[key] = self.bars.add_task(f"{key}: {status}", total=total)

    def advance(self, key: str, amount: int) -> None:
        if key in self.tasks:
            self.bars.advance(self.tasks[key], amount)

    def done(self, key: str, status: str) -> None:
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = self.bars.add_task(f"{key}: {status}", total=1)
        total = self.bars.tasks[task].total or 0
        self.bars.update(task, description=f"{key}: {status}", completed=total)

    def close(self) -> None:
        self.bars.stop()
