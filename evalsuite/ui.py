"""Progress display for long work (rich), on stderr so that ``--json`` output stays clean."""

from __future__ import annotations

import os
import sys
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout  # None when the descriptor was closed
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None and not (stream is not None and stream.isatty()):
        width = 200
    return Console(stderr=stderr, width=width, soft_wrap=True)


class Progressbars:
    """One bar per (variant, what is being encoded), plus status lines.

    Example:
        >>> with Progressbars(Console(stderr=True)) as bars:  # doctest: +SKIP
        ...     bars.update("qint8", "SciFact document", 512, 5183)
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.bars: dict[str, TaskID] = {}

    def __enter__(self) -> Progressbars:
        return self  # the display starts with the first bar: a run that fails before encoding prints only its error

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bars:
            self.progress.stop()

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{escape(message)}[/dim]", highlight=False)

    def update(self, variant: str, what: str, done: int, total: int) -> None:
        key = f"{variant} {what}"
        if not self.bars:
            self.progress.start()
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(escape(f"{variant:<16} {what}"), total=total)
        self.progress.update(self.bars[key], completed=done, total=total)
